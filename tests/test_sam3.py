"""SAM 3's interactive path ("SAM 1 task") with Stable-SAM's plugins, both ways SAM 3 comes:
Meta's `sam3` package (its tracker, built by the package at 1008 px: a 72 x 72 embedding grid)
and transformers' `Sam3TrackerModel` (a one-layer, 32-wide ViT at 1008 px, SAM 3's own decoder),
saved with save_pretrained and loaded through `hf:DIR`. Decoder weights are xavier-initialised
so that logits have a trained model's scale; embeddings are random 72 x 72 maps (the full SAM 3
image model is large on a CPU: its end-to-end test is marked slow)."""

import gzip

import numpy as np
import pytest
import torch

from conftest import build_small_sam, perturb_plugins
from helpers import (PROMPTS, PlainHf, assert_batch_equals_singles, assert_identity,
                     assert_one_step_trains_only_plugins, one_line_error, run)
from stablesam import CheckpointError, StableSam, StableSamPredictor, save_plugin
from stablesam.backends import Embedding, get_backend
from stablesam.models.files import attach_plugin

SIZE, GRID = (120, 180), 72  # original image (H, W) the prompts are drawn on; SAM 3's grid
BOXES = torch.tensor([[20.0, 30.0, 600.0, 500.0], [100.0, 80.0, 900.0, 700.0]])  # 1008 px frame


def xavier(module: torch.nn.Module) -> None:
    """Weights at a trained model's scale (the packages' own inits are much smaller)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1:
                torch.nn.init.xavier_uniform_(p)


def random_embedding(seed: int = 0) -> Embedding:
    g = torch.Generator().manual_seed(seed)
    return Embedding(torch.randn(1, 256, GRID, GRID, generator=g), (1008, 1008), SIZE,
                     {"high_res_feats": [torch.randn(1, 32, 4 * GRID, 4 * GRID, generator=g),
                                         torch.randn(1, 64, 2 * GRID, 2 * GRID, generator=g)]})


# ------------------------------------------------------------------------------------ Meta's sam3
@pytest.fixture(scope="module")
def tracker():
    """(SAM 3's tracker, random 72 x 72 embedding, SAM 3's own SAM 1-task predictor on it)."""
    pytest.importorskip("sam3", reason="SAM 3 tests need the [sam3] extra (sam3)")
    from stablesam.backends.sam3.predictor import plain_predictor

    torch.manual_seed(0)
    sam = get_backend("sam3").build_tracker()
    xavier(sam.sam_mask_decoder)
    xavier(sam.sam_prompt_encoder)
    emb = random_embedding()
    plain = plain_predictor(sam, max_hole_area=0.0)  # SAM 3's hole filling is slow on a CPU
    plain._features = {"image_embed": emb.features, "high_res_feats": emb.extras["high_res_feats"]}
    plain._orig_hw, plain._is_image_set = [SIZE], True
    return sam, emb, plain


@pytest.fixture
def stable(tracker):
    model = StableSam(tracker[0])
    pred = StableSamPredictor(model, max_hole_area=0.0)
    pred.set_embedding(tracker[1])
    yield model, pred
    model.remove_hooks()


@pytest.mark.parametrize("prompt,multimask", [("box", False), ("points", True), ("box+points", False)])
def test_untrained_stable_sam3_is_sam3(tracker, stable, prompt, multimask):
    model, pred = stable
    assert model.family == "sam3" and type(pred).__name__ == "StableSam3Predictor"
    assert model.backend.token_positions(model.sam)[1] == 2  # object-score token first
    assert model.backend.embedding_size(model.sam) == (GRID, GRID)
    assert_identity(model, pred, tracker[2], prompt, multimask)


def test_plugins_off_after_training_is_sam3_bit_for_bit(tracker, stable):
    model, pred = stable
    before = tracker[2].predict(**PROMPTS["box+points"], multimask_output=False, return_logits=True)
    perturb_plugins(model)  # as trained plugins
    model.plugins_enabled = False
    after = pred.predict(**PROMPTS["box+points"], multimask_output=False, return_logits=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_batch_equals_single_calls(stable):
    assert_batch_equals_singles(*stable)


def test_one_step_on_cached_72x72_embeddings_changes_only_plugins(tracker, stable):
    assert_one_step_trains_only_plugins(stable[0], tracker[1], BOXES[:1])


def test_plugin_file_round_trip_and_refused_on_another_base(tracker, stable, tmp_path):
    model = stable[0]
    perturb_plugins(model)
    plugin = tmp_path / "sam3_plugin.pt"
    save_plugin(model, plugin, base_name="sam3:sam3.pt")
    assert torch.load(plugin, weights_only=True)["base"]["family"] == "sam3"
    again = attach_plugin(tracker[0], plugin)
    assert all(torch.equal(v, again.plugin_state_dict()[k]) for k, v in model.plugin_state_dict().items())
    again.remove_hooks()
    with pytest.raises(CheckpointError, match="trained for a SAM 3 model.*not SAM 1"):
        attach_plugin(build_small_sam(), plugin, force=True)
    other = get_backend("sam3").build_tracker()  # another SAM 3: the base fingerprint differs
    with pytest.raises(CheckpointError, match="fingerprint"):
        attach_plugin(other, plugin)


def test_automatic_masks_match_sam_generator_with_plugins_off(tracker, stable):
    """The generator's records, plugins off, are SAM's generator run on SAM 3's plain decoder."""
    from stablesam import StableSamAutomaticMaskGenerator

    model = stable[0]
    model.plugins_enabled = False

    class Cached:  # an EmbeddingSource serving the random embedding
        def get(self, sam, image):
            return tracker[1]

    gen = StableSamAutomaticMaskGenerator(model, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                          embedding_cache=Cached())
    assert type(gen).__name__ == "StableSam3AutomaticMaskGenerator"
    records = gen.generate(np.zeros(SIZE + (3,), np.uint8))
    assert records and records[0]["segmentation"].shape == SIZE
    ref = tracker[2].predict(point_coords=np.array(records[0]["point_coords"]), point_labels=np.array([1]),
                             multimask_output=True, return_logits=True)
    assert any(abs(float(s) - records[0]["predicted_iou"]) < 1e-5 for s in ref[1])


def official_tracker_file(path, tracker) -> None:
    """sam3.pt's layout for the tracker half: {"model": {"tracker.<key>": ...}}."""
    torch.save({"model": {f"tracker.{k}": v for k, v in tracker.state_dict().items()}}, path)


@pytest.mark.slow
def test_official_checkpoint_recognised_and_its_errors_one_line(tracker, tmp_path):
    from stablesam.backends.official import read_weights, sam_state_dict
    from stablesam.modeling.registry import checkpoint_family

    path = tmp_path / "sam3.pt"
    official_tracker_file(path, tracker[0])
    assert checkpoint_family(sam_state_dict(read_weights(path), path)) == "sam3"
    done = run(["info"])
    assert done.returncode == 0 and "SAM 3 installed" in done.stdout and "sam3:PATH" in done.stdout, done.stderr
    # sam3.pt without the tokenizer file the sam3 wheel lacks: one line, nothing downloaded
    with pytest.raises(CheckpointError, match="tokenizer file bpe_simple_vocab_16e6.txt.gz"):
        get_backend("sam3").load("sam3", path, torch.device("cpu"))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        get_backend("sam3").load("sam3", cut, torch.device("cpu"))
    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.zeros(SIZE + (3,), np.uint8)).save(image)
    done = run(["segment", str(image), "--box", "10,10,50,50", "--model", f"sam3:{cut}",
                "--out", str(tmp_path / "m.png")])
    one_line_error(done.returncode, done.stderr, "truncated")
    sam2_like = tmp_path / "sam2.pt"
    torch.save({"model": {"sam_mask_decoder.x": torch.zeros(1)}}, sam2_like)
    with pytest.raises(CheckpointError, match="SAM 2.1 checkpoint, not SAM 3"):
        get_backend("sam3").load("sam3", sam2_like, torch.device("cpu"))


@pytest.mark.slow
def test_full_image_model_end_to_end(tmp_path):
    """sam3:PATH: Meta's image model built (random weights, load_from_HF=False), saved in sam3.pt's
    layout, loaded back by load_model with its tokenizer next to it, an image encoded by the image
    model's backbone into the embedding cache (72 x 72) and a box decoded with the plugins."""
    pytest.importorskip("sam3", reason="SAM 3 tests need the [sam3] extra (sam3)")
    from stablesam import load_model
    from stablesam.backends.sam3.backend import DETECTOR_PREFIX, INTERACTIVE_PREFIX, TRACKER_PREFIX

    bpe = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "wt") as f:
        f.write("#version: 0.2\nt h\nth e</w>\n")
    torch.manual_seed(0)
    full = get_backend("sam3").build("sam3", bpe)
    state = {}
    for k, v in full.state_dict().items():
        state[TRACKER_PREFIX + k[len(INTERACTIVE_PREFIX):] if k.startswith(INTERACTIVE_PREFIX) else DETECTOR_PREFIX + k] = v
    path = tmp_path / "sam3.pt"
    torch.save({"model": state}, path)
    del full, state
    model = load_model(path, "sam3", device="cpu")
    assert model.family == "sam3" and not model.plugins_enabled
    model.plugins_enabled = True
    from stablesam.models.cache import EmbeddingCache  # embeddings cached on the 72 x 72 grid

    image = np.random.default_rng(0).integers(0, 255, SIZE + (3,), dtype=np.uint8)
    first = EmbeddingCache(tmp_path / "cache")
    fresh = first.get(model.sam, image)  # the image model's backbone, as set_image runs it (one encoder run)
    second = EmbeddingCache(tmp_path / "cache")
    cached = second.get(model.sam, image)
    assert first.encoder_calls == 1 and second.encoder_calls == 0
    assert cached.features.shape == (1, 256, GRID, GRID) and torch.equal(cached.features, fresh.features)
    pred = StableSamPredictor(model, max_hole_area=0.0)
    pred.set_embedding(cached)
    masks, scores, logits = pred.predict(box=PROMPTS["box"]["box"], multimask_output=False)
    assert masks.shape == (1,) + SIZE and logits.shape == (1, 4 * GRID, 4 * GRID)
    assert model.last_alpha is not None
    assert [t.shape[-1] for t in cached.extras["high_res_feats"]] == [4 * GRID, 2 * GRID]


# ------------------------------------------------------------------------- transformers
@pytest.fixture(scope="module")
def hf3(tmp_path_factory):
    """(folder, Sam3TrackerModel loaded from it through hf:DIR, its Embedding of an image)."""
    transformers = pytest.importorskip("transformers", reason="SAM 3 via transformers needs the [hf] extra")
    if not hasattr(transformers, "Sam3TrackerModel"):
        pytest.skip(f"Sam3TrackerModel needs transformers >= 5.0 (installed: {transformers.__version__})")
    from transformers import Sam3TrackerConfig, Sam3TrackerModel

    torch.manual_seed(0)
    config = Sam3TrackerConfig(vision_config=dict(backbone_config=dict(
        model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, global_attn_indexes=[0])))
    model = Sam3TrackerModel(config)
    xavier(model.mask_decoder)
    xavier(model.prompt_encoder)
    folder = tmp_path_factory.mktemp("hf_sam3")
    model.save_pretrained(folder)
    loaded = get_backend("hf").load("hf", folder, torch.device("cpu"))
    emb = get_backend("hf").encode(loaded, np.random.default_rng(0).integers(0, 255, SIZE + (3,), dtype=np.uint8))
    return folder, loaded, emb


@pytest.fixture
def hf_stable(hf3):
    model = StableSam(hf3[1])
    pred = StableSamPredictor(model)
    pred.set_embedding(hf3[2])
    yield model, pred
    model.remove_hooks()


@pytest.mark.parametrize("prompt", ["box", "box+points"])
def test_untrained_stable_hf_sam3_is_sam3(hf3, hf_stable, prompt):
    model, pred = hf_stable
    assert model.family == "hf" and type(model.sam).__name__ == "Sam3TrackerModel"
    assert model.backend.token_positions(model.sam)[1] == 2
    assert hf3[2].features.shape[-2:] == (GRID, GRID)
    assert_identity(model, pred, PlainHf(hf3[1], hf3[2]), prompt, multimask=False)


def test_hf_sam3_off_is_plain_bit_for_bit_and_trains_only_plugins(hf3, hf_stable, tmp_path):
    model, pred = hf_stable
    ref = PlainHf(hf3[1], hf3[2]).predict(**PROMPTS["box"], multimask_output=False)[2]
    perturb_plugins(model)
    model.plugins_enabled = False
    assert np.array_equal(pred.predict(**PROMPTS["box"], multimask_output=False, return_logits=True)[2], ref)
    model.plugins_enabled = True
    assert_one_step_trains_only_plugins(model, hf3[2], BOXES[:1])
    plugin = tmp_path / "hf_sam3_plugin.pt"
    save_plugin(model, plugin, base_name=f"hf:{hf3[0].name}")
    again = attach_plugin(hf3[1], plugin)
    assert all(torch.equal(v, again.plugin_state_dict()[k]) for k, v in model.plugin_state_dict().items())
    again.remove_hooks()
    with pytest.raises(CheckpointError, match="not SAM 1"):
        attach_plugin(build_small_sam(), plugin, force=True)
