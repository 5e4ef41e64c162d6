"""Falling back at the output (`PluginConfig.selector`): per prompt, the plugged decoder's output or
plain SAM's, chosen by the IoU head. The selector keeps the plugin's guarantees (SAM at init,
SAM bit for bit with the plugins off, files that round-trip) and returns exactly the branch it
chose."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import build_small_sam, perturb_plugins
from stablesam import StableSam, StableSamPredictor, save_plugin
from stablesam.models.files import attach_plugin
from stablesam.modeling import PluginConfig
from stablesam.modeling.output_selector import choose_plugged, effective_routing, select_rows

IMAGE = np.random.default_rng(3).integers(0, 255, (120, 180, 3), dtype=np.uint8)
BOXES = np.array([[20, 15, 150, 100], [5, 5, 60, 110], [40, 30, 170, 115], [0, 0, 179, 119]])
SELECT = PluginConfig(selector="iou")


def decode(model: StableSam, plugins: bool = True, multimask: bool = False):
    predictor = StableSamPredictor(model)
    predictor.set_image(IMAGE)
    model.plugins_enabled = plugins
    try:
        masks, scores, logits = predictor.predict_batch(boxes=BOXES, multimask_output=multimask, return_logits=True)
    finally:
        model.plugins_enabled = True
    return masks, scores, logits, predictor.routing


def decode_clicks(model: StableSam, clicks, plugins: bool = True):
    """(logits, routing) of click prompts: clicks = (coords (n, k, 2), labels (n, k))."""
    predictor = StableSamPredictor(model)
    predictor.set_image(IMAGE)
    model.plugins_enabled = plugins
    try:
        logits = predictor.predict_batch(point_coords=clicks[0], point_labels=clicks[1], multimask_output=False,
                                         return_logits=True)[2]
        return logits, predictor.routing
    finally:
        model.plugins_enabled = True


def twin(model: StableSam, config: PluginConfig) -> StableSam:
    """The same SAM and plugin weights under another config (one set of hooks at a time)."""
    model.remove_hooks()
    other = StableSam(model.sam, config)
    other.load_plugin_state_dict(model.plugin_state_dict())
    return other


def test_selector_is_sam_at_init_and_off():
    sam = build_small_sam()
    reference = StableSam(sam, PluginConfig())
    plain = decode(reference, plugins=False)
    selecting = twin(reference, SELECT)
    at_init = decode(selecting)
    assert np.abs(at_init[2] - plain[2]).max() < 1e-4
    perturb_plugins(selecting, scale=0.3)
    off = decode(selecting, plugins=False)
    assert np.array_equal(off[2], plain[2]) and np.array_equal(off[1], plain[1])  # bit for bit


@pytest.mark.parametrize("multimask", [False, True])
def test_selector_returns_exactly_the_branch_it_chose(multimask):
    sam = build_small_sam()
    reference = StableSam(sam, PluginConfig())
    perturb_plugins(reference, scale=0.3)
    plugged = decode(reference, multimask=multimask)
    plain = decode(reference, plugins=False, multimask=multimask)
    # a margin that makes some prompts keep the plugged output and others not
    gain = plugged[1].max(axis=1) - plain[1].max(axis=1)
    margin = float(np.median(gain))
    selecting = twin(reference, dataclasses.replace(PluginConfig(), selector="iou", selector_margin=margin))
    chosen = decode(selecting, multimask=multimask)
    keep = selecting.last_selected.numpy()
    assert keep.tolist() == (gain >= margin).tolist() and 0 < keep.sum() < len(keep)
    for i, kept in enumerate(keep):
        source = plugged if kept else plain
        assert np.array_equal(chosen[2][i], source[2][i]) and np.array_equal(chosen[1][i], source[1][i])
        if kept:
            assert np.array_equal(chosen[3]["alpha"][i], plugged[3]["alpha"][i])
        else:
            assert chosen[3]["alpha"][i].tolist() == [0.0, 1.0] and not chosen[3]["offsets"][i].any()
    again = decode(selecting, multimask=multimask)
    assert np.array_equal(again[2], chosen[2]) and selecting.last_selected.numpy().tolist() == keep.tolist()


def test_selector_saves_and_loads_with_its_config(tmp_path):
    sam = build_small_sam()
    model = StableSam(sam, dataclasses.replace(SELECT, selector_margin=0.05))
    perturb_plugins(model, scale=0.3)
    before = decode(model)
    save_plugin(model, tmp_path / "p.pt", base_name="small")
    model.remove_hooks()
    loaded = attach_plugin(sam, tmp_path / "p.pt", force=True)
    assert loaded.config.selector == "iou" and loaded.config.selector_margin == 0.05
    after = decode(loaded)
    assert np.array_equal(before[2], after[2])


def test_selector_leaves_training_to_the_plugged_branch():
    sam = build_small_sam()
    model = StableSam(sam, dataclasses.replace(SELECT, selector_margin=1.0))  # would never keep the plugin
    perturb_plugins(model, scale=0.3)
    predictor = StableSamPredictor(model)
    predictor.set_image(IMAGE)
    embedding = predictor.features
    size = model.sam.image_encoder.img_size
    boxes = torch.tensor([[0.1 * size, 0.1 * size, 0.6 * size, 0.5 * size]])
    with torch.no_grad():
        plain_logits, _ = model.decode(embedding, boxes=boxes)  # margin 1: SAM's output
    logits, _ = model.decode(embedding, boxes=boxes)  # with gradients: the plugged branch
    model.plugins_enabled = False
    with torch.no_grad():
        sam_logits, _ = model.decode(embedding, boxes=boxes)
    assert torch.equal(plain_logits, sam_logits) and not torch.allclose(logits, sam_logits)
    logits.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.plugin_parameters())


def test_selection_helpers():
    keep = choose_plugged(torch.tensor([[0.5, 0.7], [0.9, 0.1]]), torch.tensor([[0.72, 0.0], [0.8, 0.85]]), 0.01)
    assert keep.tolist() == [True, False]
    plain, plugged = (torch.zeros(2, 3), torch.zeros(2)), (torch.ones(2, 3), torch.ones(2))
    out = select_rows(plain, plugged, keep)
    assert out[0].tolist() == [[1, 1, 1], [0, 0, 0]] and out[1].tolist() == [1, 0] and isinstance(out, tuple)
    alpha, offsets = effective_routing(torch.tensor([[0.3, 0.7], [0.4, 0.6]]), torch.ones(2, 2, 2, 2), keep)
    assert alpha.tolist() == [[pytest.approx(0.3), pytest.approx(0.7)], [0.0, 1.0]] and offsets[1].abs().sum() == 0


def test_bad_selector_options_are_refused():
    with pytest.raises(ValueError, match="selector"):
        PluginConfig(selector="vote")
    with pytest.raises(ValueError, match="selector_margin"):
        PluginConfig(selector="iou", selector_margin=float("nan"))
    assert PluginConfig.from_saved({}).selector == "none"  # files from before the selector: no selector


def test_box_selector_leaves_clicks_alone_to_sam():
    sam = build_small_sam()
    reference = StableSam(sam, PluginConfig())
    perturb_plugins(reference, scale=0.3)
    clicks = (np.array([[[60.0, 50.0], [100.0, 70.0]]]), np.array([[1, 0]]))  # one prompt of two clicks

    def click_logits(model, plugins=True):
        return decode_clicks(model, clicks, plugins)[0]

    plain_clicks, plugged_clicks = click_logits(reference, plugins=False), click_logits(reference)
    assert not np.array_equal(plain_clicks, plugged_clicks)
    iou = decode(twin(reference, dataclasses.replace(PluginConfig(), selector="iou", selector_margin=-1.0)))
    selecting = twin(reference, dataclasses.replace(PluginConfig(), selector="iou-box", selector_margin=-1.0))
    assert np.array_equal(click_logits(selecting), plain_clicks)  # clicks alone: SAM's output
    assert not selecting.last_selected.any()
    assert np.array_equal(decode(selecting)[2], iou[2])  # boxes: as the IoU selector (margin -1: plugged)
    assert selecting.last_selected.all()


def test_box_selector_keeps_the_plugin_on_boxes_and_leaves_clicks_alone_to_sam_in_one_pass():
    sam = build_small_sam()
    reference = StableSam(sam, PluginConfig())
    perturb_plugins(reference, scale=0.3)
    plugged_boxes = decode(reference)
    clicks = (np.array([[[60.0, 50.0]], [[100.0, 70.0]]]), np.array([[1], [1]]))  # two one-click prompts

    def click_call(model, plugins=True):
        return decode_clicks(model, clicks, plugins)

    plain_clicks, plugged_clicks = click_call(reference, plugins=False)[0], click_call(reference)[0]
    assert not np.array_equal(plain_clicks, plugged_clicks)
    boxing = twin(reference, dataclasses.replace(PluginConfig(), selector="box"))
    passes = []
    hook = boxing.sam.mask_decoder.register_forward_hook(lambda *a: passes.append(1))
    logits, routing = click_call(boxing)
    assert np.array_equal(logits, plain_clicks) and len(passes) == 1  # SAM's output, bit for bit, one pass
    assert not boxing.last_selected.any() and routing["alpha"].tolist() == [[0.0, 1.0]] * 2
    assert routing["offsets"].shape[0] == 2 and not routing["offsets"].any()
    boxes = decode(boxing)
    assert np.array_equal(boxes[2], plugged_boxes[2]) and len(passes) == 2  # boxes: the plugged output
    assert boxing.last_selected.all()
    assert np.array_equal(boxes[3]["alpha"], plugged_boxes[3]["alpha"])
    hook.remove()
    with torch.no_grad():  # the next call with clicks stands aside again, after a call with boxes
        assert np.array_equal(click_call(boxing)[0], plain_clicks)
