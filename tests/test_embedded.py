"""The real embedded model shipped in the package: offline load, checksums, a prediction on the
shipped example image, the SPECs that name it, and `stablesam segment` on it."""

import dataclasses
import socket

import numpy as np
import pytest
import torch
from PIL import Image

import stablesam
from stablesam.models import embedded
from stablesam.cli import main
from stablesam import PluginConfig
from stablesam.models.spec import DEFAULT_SPEC, build_model, parse_model_spec

BASE_LIMIT = 25 * 1000 * 1000  # bytes
CUP_BOX = (170, 15, 410, 305)  # the cup (with its handle) in coffee.jpg (600 x 400)
COFFEE = embedded.EXAMPLES_DIR / "coffee.jpg"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any network connection attempted while these tests run fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the embedded model must load without network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return stablesam.load_model(device="cpu")


def test_embedded_files_are_shipped_with_matching_checksums():
    assert embedded.embedded_available()
    sums = embedded.recorded_checksums()
    for f in (embedded.BASE_FILE, embedded.PLUGIN_FILE):
        assert sums[f.name] == embedded.sha256(f)
    assert embedded.BASE_FILE.stat().st_size <= BASE_LIMIT
    assert embedded.PLUGIN_FILE.stat().st_size < 1_000_000


def test_embedded_base_is_tiny_sam_v2_fully_trained_then_interactively():
    """The shipped base is the architecture the package names (TINY_SAM_ARCH) at the end of its
    schedule, trained on all five sets of the split, then given SAM's interactive training
    (prompt encoder + decoder, scripts/finetune_interactive.sh)."""
    from stablesam.modeling.small_sam import TINY_SAM_ARCH

    stored = torch.load(embedded.BASE_FILE, map_location="cpu", weights_only=True)
    assert stored["arch"] == TINY_SAM_ARCH
    assert stored["meta"]["steps"] == stored["meta"]["total_steps"] == 7000
    assert len(stored["meta"]["data"]["datasets"]) == 5
    finetune = stored["meta"]["finetune"]
    assert finetune["tune"] == "prompt+decoder" and finetune["steps"] > 0 and len(finetune["data"]) == 5


def test_load_model_gives_the_embedded_stable_sam_and_segments_the_cup(model):
    assert model.plugins_enabled and model.sam.image_encoder.img_size >= 512
    # the shipped default recipe, leaving calls of clicks alone to SAM (docs/results/lodo.md)
    assert model.num_plugin_parameters() == 50_596 and model.config == dataclasses.replace(PluginConfig(), selector="box")
    image = np.array(Image.open(COFFEE).convert("RGB"))
    predictor = stablesam.StableSamPredictor(model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(box=np.array(CUP_BOX), multimask_output=False)
    assert masks.shape == (1, *image.shape[:2]) and scores.shape == (1,)
    x0, y0, x1, y1 = CUP_BOX
    in_box = masks[0][y0:y1 + 1, x0:x1 + 1].sum()
    assert in_box > 0.9 * masks[0].sum()  # a real segmenter: the mask lies in the box...
    assert 0.3 < in_box / ((x1 - x0 + 1) * (y1 - y0 + 1)) < 0.95  # ...and fills much, not all, of it
    alpha = predictor.routing["alpha"]
    assert alpha.shape == (1, 2) and np.allclose(alpha.sum(1), 1, atol=1e-5)
    # the trained plugins do something: plain SAM on the same weights gives another mask
    model.plugins_enabled = False
    try:
        plain, _, _ = predictor.predict(box=np.array(CUP_BOX), multimask_output=False, return_logits=True)
    finally:
        model.plugins_enabled = True
    stable, _, _ = predictor.predict(box=np.array(CUP_BOX), multimask_output=False, return_logits=True)
    assert not np.allclose(plain, stable)


def cup_reference() -> np.ndarray:
    """The hand-drawn outline of the cup in coffee.jpg (tests/data/coffee_cup_polygon.json) as a mask."""
    import json
    from pathlib import Path

    import cv2

    polygon = json.loads((Path(__file__).parent / "data" / "coffee_cup_polygon.json").read_text())["polygon_xy"]
    mask = np.zeros((400, 600), np.uint8)
    cv2.fillPoly(mask, [np.array(polygon, np.int32)], 1)
    return mask.astype(bool)


@pytest.mark.parametrize("plugins", [False, True])
def test_embedded_model_segments_the_cup_like_the_hand_drawn_outline(model, plugins):
    """Base and Stable-SAM, from a box around the cup: IoU > 0.7 against the hand-drawn cup."""
    reference = cup_reference()
    predictor = stablesam.StableSamPredictor(model)
    predictor.set_image(stablesam.load_image(COFFEE))
    model.plugins_enabled = plugins
    try:
        masks, _, _ = predictor.predict(box=np.array(CUP_BOX), multimask_output=False)
    finally:
        model.plugins_enabled = True
    iou = (masks[0] & reference).sum() / (masks[0] | reference).sum()
    assert iou > 0.7, f"IoU {iou:.3f} with the hand-drawn cup"


def test_embedded_specs_build_base_and_stable_sam():
    assert DEFAULT_SPEC == "tiny-stable-sam"
    base = build_model(parse_model_spec("tiny-sam"), "cpu")
    stable = build_model(parse_model_spec("tiny-stable-sam"), "cpu")
    assert not base.plugins_enabled and stable.plugins_enabled
    for (k, a), (_, b) in zip(base.sam.state_dict().items(), stable.sam.state_dict().items()):
        assert torch.equal(a, b), k


def test_segment_cli_on_the_embedded_model(tmp_path, capsys):
    out, ov = tmp_path / "cup_mask.png", tmp_path / "cup_overlay.png"
    rc = main(["segment", str(COFFEE), "--box", ",".join(map(str, CUP_BOX)),
               "--out", str(out), "--overlay", str(ov)])
    stdout = capsys.readouterr().out
    assert rc == 0
    mask = np.array(Image.open(out))
    assert mask.shape == (400, 600) and set(np.unique(mask)) == {0, 255}
    assert "model: tiny-stable-sam" in stdout and "alpha =" in stdout


def test_info_lists_the_embedded_models(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "tiny-sam   embedded base (" in out and "davis345, coco_mval, weizmann_horse" in out
    assert "tiny-stable-sam   embedded base + its Stable-SAM plugin" in out
