"""Re-prompting with the model's own mask (`PluginConfig.refine`): the prompts it picks are decoded
again with their first mask's widened box. It keeps the plugin's guarantees (SAM at init, SAM bit
for bit with the plugins off, files that round-trip, training untouched) and returns exactly the
second pass's output for the prompts it refines and the first pass's for the others."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import build_small_sam, perturb_plugins
from stablesam import StableSam, StableSamPredictor, save_plugin
from stablesam.models.files import attach_plugin
from stablesam.modeling import PluginConfig
from stablesam.modeling.box_fit import box_fit
from stablesam.modeling.box_refiner import box_iou, mask_boxes, rows_to_refine, widen

IMAGE = np.random.default_rng(5).integers(0, 255, (120, 180, 3), dtype=np.uint8)
REFINE = PluginConfig(refine="box", refine_margin=0.1)


def setup(config: PluginConfig, perturb: bool = True):
    """A small SAM with a trained-looking plugin under `config`, its embedding and input size."""
    sam = build_small_sam()
    model = StableSam(sam, config)
    if perturb:
        perturb_plugins(model, scale=0.3)
    predictor = StableSamPredictor(model)
    predictor.set_image(IMAGE)
    return model, predictor.features, model.sam.image_encoder.img_size


def twin(model: StableSam, config: PluginConfig) -> StableSam:
    """The same SAM and plugin weights under another config (one set of hooks at a time)."""
    model.remove_hooks()
    other = StableSam(model.sam, config)
    other.load_plugin_state_dict(model.plugin_state_dict())
    return other


def expected_boxes(logits: torch.Tensor, size: int, margin: float) -> torch.Tensor:
    """The widened boxes of each prompt's mask, worked out pixel by pixel (numpy)."""
    boxes = []
    scale = size / logits.shape[-1]
    for mask in (logits[:, 0] > 0).numpy():
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = xs.min() * scale, ys.min() * scale, (xs.max() + 1) * scale, (ys.max() + 1) * scale
        w, h = x1 - x0, y1 - y0
        boxes.append(np.clip([x0 - margin * w, y0 - margin * h, x1 + margin * w, y1 + margin * h], 0, size))
    return torch.tensor(np.array(boxes), dtype=torch.float32)


def box_prompts(size: int) -> torch.Tensor:
    return torch.tensor([[0.05, 0.05, 0.95, 0.95], [0.2, 0.1, 0.7, 0.6], [0.3, 0.3, 0.9, 0.8],
                         [0.0, 0.4, 0.5, 1.0]]) * size


def test_refine_is_sam_at_init_and_off():
    model, embedding, size = setup(PluginConfig(), perturb=False)
    boxes = box_prompts(size)
    with torch.no_grad():
        model.plugins_enabled = False
        plain = model.decode(embedding, boxes=boxes)
        model.plugins_enabled = True
        refining = twin(model, REFINE)
        perturb_plugins(refining, scale=0.3)
        refining.plugins_enabled = False
        off = refining.decode(embedding, boxes=boxes)
    assert torch.equal(off[0], plain[0]) and torch.equal(off[1], plain[1])  # bit for bit
    assert PluginConfig().refine == "none" and PluginConfig.from_saved({}).refine == "none"


@pytest.mark.parametrize("clicks", [False, True])
def test_refine_returns_exactly_the_second_pass_for_the_rows_it_picks(clicks):
    model, embedding, size = setup(PluginConfig())
    boxes = box_prompts(size)
    points = (boxes[:, None, :2] * 0.5 + boxes[:, None, 2:] * 0.5, torch.ones(len(boxes), 1)) if clicks else None
    prompt_boxes = None if clicks else boxes
    with torch.no_grad():
        first = model.decode(embedding, points=points, boxes=prompt_boxes)
        _, nonempty = mask_boxes(first[0][:, 0] > 0)
        assert nonempty.all()
        first_boxes = expected_boxes(first[0], size, 0.0)
        fits = box_iou(boxes, first_boxes)
        below = 1.0 if clicks else float(fits.median())  # boxes: some refined, some not
        second = model.decode(embedding, points=points, boxes=expected_boxes(first[0], size, 0.1))
        refining = twin(model, dataclasses.replace(REFINE, refine_below=below))
        out = refining.decode(embedding, points=points, boxes=prompt_boxes)
    rows = refining.last_refined
    assert rows.tolist() == ([True] * len(boxes) if clicks else (fits < below).tolist())
    assert 0 < rows.sum() and (clicks or rows.sum() < len(rows))
    for i, refined in enumerate(rows.tolist()):
        source = second if refined else first
        assert torch.allclose(out[0][i], source[0][i], atol=1e-5) and torch.allclose(out[1][i], source[1][i], atol=1e-6)
    if not clicks:  # the rows left alone are the first pass, bit for bit
        assert torch.equal(out[0][~rows], first[0][~rows])
    with torch.no_grad():
        again = refining.decode(embedding, points=points, boxes=prompt_boxes)
    assert torch.equal(again[0], out[0])  # deterministic


def test_refine_saves_and_loads_with_its_config(tmp_path):
    model, embedding, size = setup(dataclasses.replace(REFINE, refine_margin=0.05, refine_below=0.9))
    with torch.no_grad():
        before = model.decode(embedding, boxes=box_prompts(size))
    save_plugin(model, tmp_path / "p.pt", base_name="small")
    model.remove_hooks()
    loaded = attach_plugin(model.sam, tmp_path / "p.pt", force=True)
    assert (loaded.config.refine, loaded.config.refine_margin, loaded.config.refine_below) == ("box", 0.05, 0.9)
    with torch.no_grad():
        after = loaded.decode(embedding, boxes=box_prompts(size))
    assert torch.equal(before[0], after[0])


def test_refine_leaves_training_to_one_pass():
    model, embedding, size = setup(REFINE)
    boxes = box_prompts(size)
    logits, _ = model.decode(embedding, boxes=boxes)  # with gradients: no second pass
    plain = twin(model, PluginConfig())
    with torch.no_grad():
        one_pass = plain.decode(embedding, boxes=boxes)[0]
    assert torch.allclose(logits.detach(), one_pass, atol=1e-6)


def test_refine_through_the_predictor_takes_image_frame_boxes():
    model, _, _ = setup(REFINE)
    predictor = StableSamPredictor(model)
    predictor.set_image(IMAGE)
    loose = np.array([[0, 0, 179, 119], [10, 10, 170, 110]])
    masks, scores, _ = predictor.predict_batch(boxes=loose, multimask_output=False)
    assert masks.shape == (2, 1, 120, 180) and model.last_refined.tolist() == [True, True]
    assert predictor.routing["alpha"].shape == (2, 2)


def test_refine_helpers():
    mask = torch.zeros(2, 8, 10, dtype=torch.bool)
    mask[0, 2, 3] = True
    boxes, nonempty = mask_boxes(mask)
    assert boxes.tolist() == [[3, 2, 4, 3], [0, 0, 0, 0]] and nonempty.tolist() == [True, False]
    assert widen(torch.tensor([[10.0, 10.0, 30.0, 20.0]]), 0.1, 32).tolist() == [[8.0, 9.0, 32.0, 21.0]]
    assert box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2]])).item() == pytest.approx(1 / 3)
    first = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    prompt = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 20, 20], [0.0, 0, 20, 20]])
    assert rows_to_refine(first, prompt, None, torch.tensor([True, True, False]), 0.9, 1).tolist() == [False, True, False]
    labels = torch.tensor([[1, -1, -1], [1, 0, -1], [1, 1, 0]])  # 1, 2 and 3 clicks (-1: padding)
    assert rows_to_refine(first, None, labels, torch.tensor([True, False, True]), 0.5, 1).tolist() == [True, False, False]
    assert rows_to_refine(first, None, labels, torch.ones(3, dtype=torch.bool), 0.5, 2).tolist() == [True, True, False]
    assert not rows_to_refine(first, None, labels, torch.ones(3, dtype=torch.bool), 0.5, 0).any()
    full = torch.zeros(2, 8, 10, dtype=torch.bool)
    full[0] = True
    assert box_fit(full, torch.tensor([[0.0, 0, 10, 8], [0.0, 0, 5, 5]])).tolist() == [1.0, 0.0]


def test_bad_refine_options_are_refused():
    with pytest.raises(ValueError, match="refine must be"):
        PluginConfig(refine="mask")
    for name, value in (("refine_margin", -0.1), ("refine_below", float("nan")), ("refine_margin", True),
                        ("refine_clicks", -1), ("refine_clicks", 1.5)):
        with pytest.raises(ValueError, match=name):
            PluginConfig(refine="box", **{name: value})
