"""Checks every SAM family's tests run the same way (identity at init, batching, training)."""

import numpy as np
import torch
from torch.nn import functional as F

from conftest import perturb_plugins

PROMPTS = {
    "box": dict(box=np.array([40.0, 25.0, 140.0, 95.0])),
    "points": dict(point_coords=np.array([[90.0, 60.0], [20.0, 10.0]]), point_labels=np.array([1, 0])),
    "box+points": dict(
        box=np.array([40.0, 25.0, 140.0, 95.0]),
        point_coords=np.array([[90.0, 60.0]]),
        point_labels=np.array([1]),
    ),
}
BOXES = np.array([[40.0, 25.0, 140.0, 95.0], [10.0, 5.0, 170.0, 110.0], [60.0, 40.0, 100.0, 80.0]])


def assert_identity(model, stable_pred, plain_pred, prompt: str, multimask: bool, **extra) -> None:
    """Untrained Stable-X == X (low-res logits within 1e-4), plugins_enabled=False == X, and
    perturbed plugins move the output (so the first check can fail)."""
    kwargs = dict(PROMPTS[prompt], multimask_output=multimask, return_logits=True, **extra)
    ref = plain_pred.predict(**kwargs)[2]
    model.plugins_enabled = True
    model.last_alpha = None
    out = stable_pred.predict(**kwargs)[2]
    assert model.last_alpha is not None, "the plugins did not run"
    assert np.abs(out - ref).max() < 1e-4
    state = model.plugin_state_dict()
    perturb_plugins(model)
    moved = stable_pred.predict(**kwargs)[2]
    plain_after = plain_pred.predict(**kwargs)[2]  # X's own predictor, trained-looking plugins attached
    model.plugins_enabled = False
    off = stable_pred.predict(**kwargs)[2]
    model.plugins_enabled = True
    model.load_plugin_state_dict(state)
    assert np.abs(moved - ref).max() > 1e-2
    assert np.abs(off - ref).max() < 1e-6
    assert np.array_equal(plain_after, ref)  # wrapping leaves X's own predictor unchanged


def assert_batch_equals_singles(model, stable_pred) -> None:
    perturb_plugins(model, scale=0.1)
    masks, scores, logits = stable_pred.predict_batch(boxes=BOXES, multimask_output=False, return_logits=True)
    alpha = stable_pred.routing["alpha"]
    assert alpha.shape == (len(BOXES), 2)
    for i, box in enumerate(BOXES):
        m, s, low = stable_pred.predict(box=box, multimask_output=False, return_logits=True)
        assert np.abs(low - logits[i]).max() < 1e-4
        assert np.abs(s - scores[i]).max() < 1e-4
        assert np.abs(stable_pred.routing["alpha"][0] - alpha[i]).max() < 1e-5


def assert_one_step_trains_only_plugins(model, embedding, boxes: torch.Tensor) -> None:
    """One Adam step on a decode loss changes plugin weights and nothing of the base model."""
    base_before = {k: v.clone() for k, v in model.sam.state_dict().items()}
    plugin_before = model.plugin_state_dict()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(any(p is q for q in model.plugin_parameters()) for p in params)
    opt = torch.optim.Adam(params, lr=1e-3)
    low, _ = model.decode(embedding.features, boxes=boxes, extras=embedding.extras)
    target = torch.zeros_like(low)
    target[..., 10:40, 10:50] = 1
    loss = F.binary_cross_entropy_with_logits(low, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    for k, v in model.sam.state_dict().items():
        assert torch.equal(v, base_before[k]), k
    after = model.plugin_state_dict()
    assert any(not torch.equal(after[k], plugin_before[k]) for k in after)
