import json

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, build_small_sam
from stablesam.models.cache import EmbeddingCache
from stablesam.cli import main
from stablesam.data.datasets import FolderDataset
from stablesam.evaluation.prompt_eval import EvalConfig, evaluate
from stablesam.models.segmenters import Segmenter
from stablesam.prompts.generation import parse_prompts
from stablesam.evaluation.reports import write_reports
from helpers import make_folder


class Oracle(Segmenter):
    """Returns the ground truth whatever the prompt: must score 1 everywhere."""

    name = "oracle"

    def __init__(self, ds):
        self.lookup = {s.image.tobytes(): s.mask for s in ds}

    def set_image(self, image):
        self.mask = self.lookup[image.tobytes()]

    def predict(self, prompts, multimask=False):
        return np.repeat(self.mask[None], len(prompts), axis=0)


def test_perfect_predictor_scores_one(tmp_path):
    ds = FolderDataset(make_folder(tmp_path / "toy"))
    config = EvalConfig(parse_prompts("gt-box,noisy-box@0.4,points@3"), samples=5, seed=0)
    result = evaluate([ds], [Oracle(ds)], config, progress=False)
    assert len(result.rows) == 3
    for row in result.rows:
        assert row["mIoU"] == 1.0 and row["mBIoU"] == 1.0 and row["objects"] == 3
        assert row["stability"] == (None if row["prompt"] == "gt-box" else 1.0)
    files = write_reports(result, ["oracle"], tmp_path / "out", {"command": "test", "samples": 5, "seed": 0})
    saved = json.loads(files["json"].read_text())
    assert saved["rows"] == result.rows
    assert "| gt-box | 1.000 |" in files["md"].read_text()


def test_cache_skips_encoder_and_recovers_from_corruption(tmp_path):
    sam = build_small_sam()
    calls = []
    sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    first = EmbeddingCache(tmp_path / "cache").get(sam, image)
    assert len(calls) == 1
    cache = EmbeddingCache(tmp_path / "cache")  # a new process: memory empty, disk warm
    again = cache.get(sam, image)
    assert len(calls) == 1 and cache.encoder_calls == 0
    assert torch.equal(first.features, again.features)
    assert again.original_size == (50, 70) and again.input_size == (183, 256)
    (entry,) = list((tmp_path / "cache").rglob("*.pt"))
    entry.write_bytes(entry.read_bytes()[:100])  # truncated by a crash
    recomputed = EmbeddingCache(tmp_path / "cache").get(sam, image)
    assert len(calls) == 2 and torch.equal(recomputed.features, first.features)
    # other weights -> another key
    other = build_small_sam(seed=3)
    assert EmbeddingCache(tmp_path / "cache").key(other, image) != cache.key(sam, image)


def run_cli(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.slow
def test_eval_cli_end_to_end_real_data(tmp_path, capsys, fake_embedded):
    data = SHARED_DATA / "coco_mval"
    if not data.is_dir():
        pytest.skip(f"real data not found at {data}")
    args = ["eval", "--data", str(data), "--model", "tiny-sam", "--model", "tiny-stable-sam", "--model", "grabcut",
            "--prompts", "gt-box,noisy-box@0.3,points@1", "--samples", "3", "--limit", "2",
            "--cache", str(tmp_path / "cache")]
    rc, out, err = run_cli(args + ["--out", str(tmp_path / "a")], capsys)
    assert rc == 0, err
    for name in ("results.json", "results.md", "per_object.csv", "noise_curve.png", "examples.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    rows = {(r["model"], r["prompt"]) for r in res["rows"]}
    assert ("grabcut", "points@1") not in rows and ("grabcut", "noisy-box@0.3") in rows
    assert len(rows) == 3 + 3 + 2
    for r in res["rows"]:
        stable = r["model"] == "tiny-stable-sam"  # the DRP's α1 is recorded for Stable-SAM only
        assert set(r) == {"model", "dataset", "prompt", "mIoU", "mBIoU", "stability", "objects"} | ({"alpha1"} if stable else set())
        assert r["dataset"] == "coco_mval" and r["objects"] == 2 and 0 <= r["mIoU"] <= 1
        assert not stable or 0 < r["alpha1"] < 1
    assert res["samples"] == 3 and res["seed"] == 0 and "versions" in res and res["command"].startswith("stablesam eval")
    # the first two objects share one COCO image, and tiny-sam / tiny-stable-sam share the encoder
    assert "encoder runs: 1" in out
    # same inputs and seed, warm cache: the same numbers, no encoder run
    rc, out, err = run_cli(args + ["--out", str(tmp_path / "b")], capsys)
    assert rc == 0 and "encoder runs: 0" in out
    assert json.loads((tmp_path / "b" / "results.json").read_text())["rows"] == res["rows"]
    # without the sheet's usual prompt types (noisy-box@0.4, points@1) it shows the first one asked for
    gt_only = [a if a != "gt-box,noisy-box@0.3,points@1" else "gt-box" for a in args]
    rc, out, err = run_cli(gt_only + ["--limit", "1", "--out", str(tmp_path / "c")], capsys)
    assert rc == 0, err
    assert (tmp_path / "c" / "examples.png").stat().st_size > 0


def test_eval_cli_rejects_bad_specs_before_work(tmp_path, capsys):
    folder = make_folder(tmp_path / "toy")
    for spec, message in [("vit_q:/x.pth", "unknown model SPEC"), ("vit_b:/no/such.pth", "checkpoint not found"),
                          ("grabcut+plugin=/x.pt", "grabcut takes no"), ("tiny-sam+plugin=/no.pt", "plugin file not found")]:
        rc, out, err = run_cli(["eval", "--data", str(folder), "--model", spec, "--out", str(tmp_path / "o")], capsys)
        assert rc == 2 and message in err, (spec, err)
        assert "accepted model SPECs" in err
    rc, _, err = run_cli(["eval", "--data", str(folder), "--model", "grabcut", "--prompts", "box@3"], capsys)
    assert rc == 2 and "unknown prompt type" in err
    assert not (tmp_path / "o").exists()


def test_grabcut_at_reduced_size_matches_full_size_on_a_clean_object():
    from stablesam.evaluation.metrics import mask_iou
    from stablesam.models.spec import ModelSpec, SpecError, build_segmenter, parse_model_spec
    from stablesam.prompts.generation import Prompts

    spec = parse_model_spec("grabcut@128")
    assert spec == ModelSpec("grabcut@128", "grabcut", max_side=128)
    for bad in ("grabcut@", "grabcut@x", "grabcut@8"):
        with pytest.raises(SpecError, match="grabcut@N needs an integer"):
            parse_model_spec(bad)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, size=(300, 451, 3), dtype=np.uint8)
    image[80:220, 150:330] = rng.integers(180, 255, size=(140, 180, 3))  # a bright object on dark noise
    gt = np.zeros(image.shape[:2], bool)
    gt[80:220, 150:330] = True
    prompts = Prompts(boxes=np.array([[140.0, 70, 340, 230], [130, 60, 350, 240]]))
    masks = {}
    for text in ("grabcut", "grabcut@128"):
        seg = build_segmenter(parse_model_spec(text))
        seg.set_image(image)
        masks[text] = seg.predict(prompts)
        assert seg.name == text and masks[text].shape == (2, 300, 451)
    assert all(mask_iou(m, gt) > 0.9 for m in masks["grabcut@128"])  # resized back to full size
    assert all(mask_iou(a, b) > 0.9 for a, b in zip(masks["grabcut"], masks["grabcut@128"]))
