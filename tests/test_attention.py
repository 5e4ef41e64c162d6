"""The attention read-out behind `stablesam eval --explain`: it must be what SAM's own Attention
module computes, with the plugins off and on."""

import numpy as np
import torch

from conftest import build_small_sam, perturb_plugins
from stablesam.evaluation.attention import AttentionProbe, attention_weights, grid_fraction, mass_inside, token_to_image_attention
from stablesam.modeling import StableSam
from stablesam.backends.predictor import StableSamPredictor


def test_attention_weights_reproduce_the_modules_output():
    torch.manual_seed(0)
    module = token_to_image_attention(build_small_sam())
    q, k, v = torch.randn(2, 7, 256), torch.randn(2, 64, 256), torch.randn(2, 64, 256)
    attn = attention_weights(module, q, k)
    assert attn.shape == (2, 8, 7, 64) and torch.allclose(attn.sum(-1), torch.ones(2, 8, 7))
    heads = module._separate_heads(module.v_proj(v), module.num_heads)
    rebuilt = module.out_proj(module._recombine_heads(attn @ heads))
    assert torch.allclose(rebuilt, module(q=q, k=k, v=v), atol=1e-5)


def test_probe_sees_the_keys_the_plugins_route():
    model = StableSam(build_small_sam())
    perturb_plugins(model, scale=0.3)
    predictor = StableSamPredictor(model)
    rng = np.random.default_rng(0)
    predictor.set_image(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    boxes = np.array([[10, 10, 90, 70], [30, 20, 120, 90]])
    maps = {}
    for on in (False, True):
        model.plugins_enabled = on
        with AttentionProbe(model.sam) as probe:
            predictor.predict_batch(boxes=boxes)
        maps[on] = probe.last()
        assert maps[on].shape == (2, 16 * 16) and torch.allclose(maps[on].sum(1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(maps[False], maps[True], atol=1e-4)  # the routed keys changed where it looks
    with AttentionProbe(model.sam) as probe:
        pass
    assert probe.last() is None and not token_to_image_attention(model.sam)._forward_hooks  # hook removed


def test_mass_inside_the_object():
    mask = np.zeros((128, 256), bool)
    mask[:, :128] = True  # the left half of the image
    fraction = grid_fraction(mask, 256, (16, 16))
    assert fraction.shape == (16, 16)
    assert np.allclose(fraction[:8, :8], 1) and np.allclose(fraction[:8, 8:], 0) and np.allclose(fraction[8:], 0)
    maps = torch.zeros(2, 256)
    maps[0, 0] = 1.0  # all on a cell inside
    maps[1, :] = 1 / 256  # uniform
    assert np.allclose(mass_inside(maps, fraction), [1.0, 64 / 256])


def test_eval_explain_writes_attention_tables_and_sheet(tmp_path, fake_embedded):
    import json

    from PIL import Image

    from stablesam.cli import main

    root = tmp_path / "toy"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(root / "images" / f"o{i}.png")
        m = np.zeros((96, 128), np.uint8)
        m[20 + 10 * i:70, 30:100] = 255
        Image.fromarray(m).save(root / "masks" / f"o{i}.png")
    out = tmp_path / "out"
    assert main(["eval", "--data", str(root), "--model", "tiny-sam", "--model", "tiny-stable-sam", "--explain", "2",
                 "--prompts", "noisy-box@0.4,points@1", "--samples", "3", "--no-cache", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 4 and all(0 <= r["attention_inside"] <= 1 for r in rows)
    assert "attention inside the object" in (out / "results.md").read_text()
    assert (out / "explain.png").stat().st_size > 0
    assert main(["eval", "--data", str(root), "--model", "tiny-sam", "--prompts", "gt-box", "--samples", "1",
                 "--no-cache", "--out", str(tmp_path / "plain")]) == 0
    assert "attention_inside" not in (tmp_path / "plain" / "results.json").read_text()
    assert not (tmp_path / "plain" / "explain.png").exists()


def test_reads_from_moves_the_deformed_share_to_p_plus_offset():
    from stablesam.evaluation.attention import reads_from

    maps = np.zeros((1, 16))
    maps[0, 5] = 1.0  # all attention on cell (x=1, y=1) of a 4 x 4 grid
    offsets = np.zeros((1, 4, 4, 2))
    offsets[0, 1, 1] = (1.5, 0.0)  # that cell samples from x = 2.5, y = 1
    out = reads_from(maps, offsets, np.array([[0.6, 0.4]]))
    expected = np.zeros(16)
    expected[5], expected[6], expected[7] = 0.4, 0.3, 0.3  # 0.4 stays, 0.6 split between x = 2 and 3
    assert np.allclose(out[0], expected) and np.isclose(out.sum(), 1.0)
    assert np.allclose(reads_from(maps, np.zeros((1, 4, 4, 2)), np.array([[0.6, 0.4]])), maps)  # Δp = 0: unchanged
