"""SAM's interactive training simulation: corrective clicks from the error region, the previous
logits fed back as mask_input, in training, in the Python API and in the demo."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import build_small_sam
from stablesam import StableSam
from stablesam.training.interactive import error_click, first_prompt, image_cells, interactive_loss
from stablesam.training.rts import RtsMixture, sample_rts_prompt
from stablesam.training.loop import step_items


def maps(seed: int, shape=(24, 31)):
    rng = np.random.default_rng(seed)
    gt, pred = rng.random(shape) < 0.4, rng.random(shape) < 0.4
    keep = rng.random(shape) < 0.8
    return gt, pred, keep


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), deepest=st.sampled_from([0.0, 0.5, 1.0]))
def test_error_clicks_fall_in_the_error_region_with_the_right_sign(seed, deepest):
    gt, pred, keep = maps(seed)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        click = error_click(gt, pred, keep, rng, deepest)
        assert click is not None
        x, y, positive = click
        assert keep[y, x], "a click on an ignore / outside pixel"
        if positive:
            assert gt[y, x] and not pred[y, x], "a positive click outside the false negatives"
        else:
            assert pred[y, x] and not gt[y, x], "a negative click outside the false positives"


def test_error_clicks_are_seeded_and_none_without_error():
    gt, pred, keep = maps(3)
    a = [error_click(gt, pred, keep, np.random.default_rng(7)) for _ in range(3)]
    b = [error_click(gt, pred, keep, np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    many = {error_click(gt, pred, keep, np.random.default_rng(s), 0.0) for s in range(30)}
    assert len(many) > 10, "uniform clicks should spread over the error region"
    # errors only where ignored: no click
    assert error_click(gt, gt | ~keep, keep, np.random.default_rng(0)) is None
    # deepest point: the centre of a single square false-negative region
    gt2 = np.zeros((21, 21), bool)
    gt2[5:16, 5:16] = True
    assert error_click(gt2, np.zeros_like(gt2), np.ones_like(gt2), np.random.default_rng(0), 1.0) == (10, 10, True)


def test_image_cells_cover_the_resized_image_only():
    cells = image_cells((100, 200), 256, (64, 64))  # resized to 128 x 256: the top half
    assert cells[:32].all() and not cells[32:].any()


def small_model():
    model = StableSam(build_small_sam(), None)
    model.plugins_enabled = False
    model.sam.mask_decoder.requires_grad_(True)
    model.sam.prompt_encoder.requires_grad_(True)
    return model


def test_each_round_feeds_the_previous_logits_back_as_mask_input():
    model = small_model()
    emb = torch.randn(1, 256, 16, 16, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(1, 1, 64, 64)
    target[..., 10:40, 12:44] = 1
    calls = []

    def decode(points, boxes, mask_input, multimask):
        logits, iou = model.decode(emb, points, boxes, mask_input=mask_input, multimask_output=multimask)
        calls.append({"mask_input": mask_input, "logits": logits.detach(), "points": points, "multimask": multimask})
        return logits, iou

    mask = np.zeros((60, 80), bool)
    mask[5:30, 8:50] = True
    first = first_prompt(mask, np.random.default_rng(1), box_share=0.0)  # one click: multimask first round
    loss, clicks = interactive_loss(decode, first, lambda c: np.asarray(c, float) * 256 / 80, target, None,
                                    image_cells((60, 80), 256, (64, 64)), 256, np.random.default_rng(0), clicks=4)
    assert torch.isfinite(loss) and loss.requires_grad
    assert len(calls) == 4 + 3 and calls[0]["mask_input"] is None and calls[0]["multimask"]
    assert not any(c["multimask"] for c in calls[1:])
    for prev, cur in zip(calls, calls[1:]):
        fed = cur["mask_input"]
        assert fed is not None and not fed.requires_grad
        assert any(torch.equal(fed[0, 0], prev["logits"][0, m]) for m in range(prev["logits"].shape[1]))
    n_points = [c["points"][0].shape[1] for c in calls]
    assert n_points[-1] == 1 + len(clicks) and len(clicks) <= 4
    # the mask_input path is live: another mask input gives other logits
    pts = calls[-1]["points"]
    a, _ = model.decode(emb, pts, None, mask_input=calls[-1]["mask_input"])
    b, _ = model.decode(emb, pts, None, mask_input=-calls[-1]["mask_input"])
    assert (a - b).abs().max() > 1e-4


def test_interactive_rts_component_is_drawn_and_seeded():
    mixture = RtsMixture.parse("gt-box=0.5,interactive=0.5,interactive-clicks=3")
    assert mixture.interactive_clicks == 3 and mixture.rates()["interactive"] == 0.5
    mask = np.zeros((40, 50), bool)
    mask[10:30, 10:40] = True
    kinds = [sample_rts_prompt(mask, mixture, np.random.default_rng(s))[0] for s in range(200)]
    assert 60 < kinds.count("interactive") < 140
    # without the component, the draws are those of the mixture before it existed
    plain = RtsMixture(noisy_box=0.6, interactive=0.0, adv_box=0.0)
    for s in range(20):
        a = sample_rts_prompt(mask, plain, np.random.default_rng(s))
        b = sample_rts_prompt(mask, RtsMixture.parse(
            "gt-box=0.1,noisy-box=0.6,points=0.2,box+points=0.1,part-clicks=0.5"), np.random.default_rng(s))
        assert a[0] == b[0]
    with pytest.raises(ValueError, match="interactive-clicks must be a whole number"):
        RtsMixture.parse("interactive=1,interactive-clicks=2.5")
    with pytest.raises(ValueError, match="deepest_clicks"):
        RtsMixture.parse("interactive=1,deepest-clicks=2")


def test_prompt_and_decoder_training_moves_the_mask_input_path(tmp_path):
    from stablesam.models.files import load_decoder, load_sam_file, save_sam_file
    from stablesam.backends.official import read_weights
    from stablesam.cli import main
    from conftest import SMALL_ARCH
    from helpers import make_folder

    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    data = make_folder(tmp_path / "toy", n=4)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--model", f"sam:{sam_file}", "--out", str(out), "--cache",
                 str(tmp_path / "cache"), "--tune", "prompt+decoder", "--steps", "3", "--batch-size", "2",
                 "--rts-mixture", "interactive=1,interactive-clicks=2"]) == 0
    base = read_weights(sam_file)["state_dict"]
    tuned = read_weights(out / "decoder.pt")
    assert tuned["format_version"] == 2
    moved = [k for k, v in tuned["prompt_encoder"].items() if not torch.equal(v, base["prompt_encoder." + k])]
    assert any(k.startswith("mask_downscaling.") for k in moved), moved
    sam = load_sam_file(sam_file)
    load_decoder(sam, out / "decoder.pt")
    for k, v in sam.prompt_encoder.state_dict().items():
        assert torch.equal(v, tuned["prompt_encoder"][k])


def test_demo_decodes_each_click_with_the_mask_before_it(fake_embedded):
    from stablesam.demo.engine import DemoEngine, Prompt
    from stablesam.models.embedded import EXAMPLES_DIR
    from stablesam.models.spec import build_model, parse_model_spec

    data = (EXAMPLES_DIR / "cat.jpg").read_bytes()
    engine = DemoEngine(build_model(parse_model_spec("tiny-stable-sam"), "cpu"))
    item, _ = engine.add_image(data, "cat.jpg", 10_000_000, 25_000_000)
    calls = []
    predict = engine.predictor.predict

    def spy(**kw):
        out = predict(**kw)
        calls.append({**kw, "logits": out[2]})
        return out

    engine.predictor.predict = spy
    box = np.array([60.0, 20.0, 380.0, 280.0])
    clicks = np.array([[200.0, 150.0], [100.0, 60.0]])
    one = engine.predict(item, Prompt(box, clicks[:1], np.array([1])))
    assert len(calls) == 4  # per model: the box, then box + click with the box's logits
    for model_calls in (calls[:2], calls[2:]):
        assert model_calls[0]["mask_input"] is None
        assert np.array_equal(model_calls[1]["mask_input"], model_calls[0]["logits"][:1])
    calls.clear()
    two = engine.predict(item, Prompt(box, clicks, np.array([1, 0])))
    assert len(calls) == 2, "earlier stages come from the cache: one decoder pass per model"
    assert all(c["mask_input"] is not None and len(c["point_coords"]) == 2 for c in calls)
    fresh = DemoEngine(engine.model)
    fresh_item, _ = fresh.add_image(data, "cat.jpg", 10_000_000, 25_000_000)
    again = fresh.predict(fresh_item, Prompt(box, clicks, np.array([1, 0])))  # no cached stages: same result
    assert all(again[k]["mask"] == two[k]["mask"] for k in ("sam", "stable_sam"))
    assert one["sam"]["mask"] != two["sam"]["mask"] or one["stable_sam"]["mask"] != two["stable_sam"]["mask"]


def test_a_negative_click_on_a_false_positive_removes_it():
    """The embedded model takes corrections through the Python API (SamPredictor's call shape):
    the previous low-res logits as mask_input plus a negative click in an extra region. A loose
    box around the cup on coffee.jpg spills onto the saucer: left of x = 165 and below y = 335
    there is no cup."""
    import stablesam
    from stablesam.evaluation.clicks import next_click
    from stablesam.models.embedded import EXAMPLES_DIR

    predictor = stablesam.StableSamPredictor(stablesam.load_model())  # the embedded Stable-SAM
    predictor.set_image(stablesam.load_image(EXAMPLES_DIR / "coffee.jpg"))
    saucer = np.zeros((400, 600), bool)
    saucer[:, :165] = saucer[335:, :] = True
    box = np.array([150, 10, 470, 330])
    masks, scores, logits = predictor.predict(box=box, multimask_output=False)
    extra = masks[0] & saucer
    assert extra.sum() > 300, "the loose box should spill onto the saucer"
    click = next_click(np.zeros_like(extra), extra)  # the deepest point of the extra region
    assert not click.positive and saucer[click.y, click.x]
    fixed, _, _ = predictor.predict(point_coords=np.array([[click.x, click.y]]), point_labels=np.array([0]),
                                    box=box, mask_input=logits, multimask_output=False)
    assert not fixed[0][click.y, click.x], "the clicked false positive is still in the mask"
    assert (fixed[0] & saucer).sum() < 0.5 * extra.sum()
