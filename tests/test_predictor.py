import numpy as np
import pytest
from segment_anything import SamPredictor

from conftest import perturb_plugins
from stablesam import StableSam, StableSamPredictor

BOX = np.array([40.0, 25.0, 140.0, 95.0])
PTS = np.array([[90.0, 60.0], [20.0, 10.0]])
LBL = np.array([1, 0])
COMBOS = {
    "box": dict(box=BOX),
    "points": dict(point_coords=PTS, point_labels=LBL),
    "box+points": dict(box=BOX, point_coords=PTS[:1], point_labels=LBL[:1]),
    "mask": dict(point_coords=PTS[:1], point_labels=LBL[:1], mask_input=np.zeros((1, 64, 64), np.float32)),
}


@pytest.fixture
def predictors(small_sam, image):
    sam_pred = SamPredictor(small_sam)
    sam_pred.set_image(image)
    model = StableSam(small_sam)
    perturb_plugins(model)
    pred = StableSamPredictor(model)
    pred.set_image(image)
    return sam_pred, pred


@pytest.mark.parametrize("return_logits", [False, True])
@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("combo", list(COMBOS))
def test_same_shapes_as_sam_predictor(predictors, combo, multimask, return_logits):
    sam_pred, pred = predictors
    ref = sam_pred.predict(**COMBOS[combo], multimask_output=multimask, return_logits=return_logits)
    out = pred.predict(**COMBOS[combo], multimask_output=multimask, return_logits=return_logits)
    for a, b in zip(ref, out):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert out[0].shape[-2:] == (120, 180)


@pytest.mark.parametrize("multimask", [False, True])
def test_batched_call_equals_single_calls(predictors, multimask):
    _, pred = predictors
    rng = np.random.default_rng(0)
    n = 5
    x0 = rng.uniform(0, 80, n); y0 = rng.uniform(0, 50, n)
    boxes = np.stack([x0, y0, x0 + rng.uniform(20, 90, n), y0 + rng.uniform(20, 60, n)], 1)
    coords = rng.uniform(0, 120, (n, 3, 2))
    labels = np.array([[1, 1, 0], [1, -1, -1], [1, 0, -1], [1, 1, 1], [0, 1, -1]])
    for kwargs in (dict(boxes=boxes), dict(point_coords=coords, point_labels=labels),
                   dict(boxes=boxes, point_coords=coords, point_labels=labels)):
        masks, scores, low = pred.predict_batch(**kwargs, multimask_output=multimask, return_logits=True)
        m = 3 if multimask else 1
        assert masks.shape == (n, m, 120, 180) and scores.shape == (n, m) and low.shape == (n, m, 64, 64)
        alpha = pred.routing["alpha"]
        assert alpha.shape == (n, 2) and np.allclose(alpha.sum(1), 1)
        assert pred.routing["offsets"].shape == (n, 16, 16, 2)
        for i in range(n):
            single = dict(
                box=kwargs["boxes"][i] if "boxes" in kwargs else None,
                point_coords=kwargs["point_coords"][i] if "point_coords" in kwargs else None,
                point_labels=kwargs["point_labels"][i] if "point_labels" in kwargs else None,
            )
            s_masks, s_scores, s_low = pred.predict(**single, multimask_output=multimask, return_logits=True)
            np.testing.assert_allclose(low[i], s_low, atol=1e-4)
            np.testing.assert_allclose(scores[i], s_scores, atol=1e-5)
            np.testing.assert_allclose(masks[i], s_masks, atol=1e-4)
            np.testing.assert_allclose(pred.routing["alpha"][0], alpha[i], atol=1e-6)


def test_predict_batch_bad_input(predictors):
    _, pred = predictors
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        pred.predict_batch(boxes=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="point_labels"):
        pred.predict_batch(point_coords=np.zeros((2, 1, 2)))
    with pytest.raises(ValueError, match="must match"):
        pred.predict_batch(boxes=np.zeros((2, 4)), point_coords=np.zeros((3, 1, 2)), point_labels=np.ones((3, 1)))
    with pytest.raises(ValueError, match="needs boxes"):
        pred.predict_batch()
    with pytest.raises(TypeError, match="StableSam"):
        StableSamPredictor(pred.model)


def test_max_batch_does_not_change_results(predictors):
    _, pred = predictors
    boxes = np.array([[10, 10, 90, 80], [30, 5, 160, 110], [0, 0, 179, 119], [50, 40, 60, 50], [5, 60, 100, 118]], float)
    ref = pred.predict_batch(boxes=boxes, max_batch=5, return_logits=True)
    alpha = pred.routing["alpha"]
    for mb in (1, 2, 4):
        out = pred.predict_batch(boxes=boxes, max_batch=mb, return_logits=True)
        for a, b in zip(ref, out):
            np.testing.assert_allclose(a, b, atol=1e-4)
        np.testing.assert_allclose(pred.routing["alpha"], alpha, atol=1e-6)
    pred.stable.plugins_enabled = False
    pred.predict_batch(boxes=boxes)
    assert pred.routing["alpha"] is None
