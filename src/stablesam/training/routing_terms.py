"""Loss terms on the plugins' routing, added to RTS's BCE + Dice by `stablesam train`.

Good prompts should leave SAM alone: the paper's DRP is meant to switch the DSP off when the
prompt is already good, yet trained on the mask loss alone α stays near (0.5, 0.5) for every
prompt type. These terms teach it, each zero for an untrained plugin (defaults: consistency 1 and
alpha_prior 0.5, chosen by leave-one-dataset-out, docs/results/lodo.md; offset_reg off):
  - consistency (self-distillation): for `gt-box` and near-gt box prompts the plugged mask logits
    match the frozen base's (a binary KL per low-res pixel), so what SAM already gets right stays;
  - alpha_prior: for the same prompts, the weight α1 of the deformed features is pushed to 0;
  - alpha_far: for far prompts, α1 is pushed to 1, so the DRP is taught to route by prompt
    quality from both sides (off by default);
  - offset_reg: the mean squared offset |Δp|² in units of offset_range², for every prompt.
A box-only prompt is near-gt when its noise scale (`box_noise_scale`) is at most `near_gt`; far
when it is at least `far`, as is every prompt of clicks alone (one to a few clicks leave the
object's extent open).
"""

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterator, Optional

import numpy as np
import torch
from torch.nn import functional as F

from ..prompts.generation import Prompts


# What a training config written before the terms existed meant by leaving them out.
TERMS_ABSENT_MEAN: Dict[str, float] = {"consistency": 0.0, "alpha_prior": 0.0, "offset_reg": 0.0, "alpha_far": 0.0}


@dataclass(frozen=True)
class RoutingTerms:
    consistency: float = 1.0  # weight of `consistency_loss` on near-gt prompts
    alpha_prior: float = 0.5  # weight of α1 (trust in the deformed features) on near-gt prompts
    offset_reg: float = 0.0  # weight of `offset_penalty`, every prompt
    near_gt: float = 0.1  # largest box noise scale that counts as near-gt (0: gt boxes only)
    alpha_far: float = 0.0  # weight of α2 = 1 - α1 (trust in the regular features) on far prompts
    far: float = 0.25  # smallest box noise scale that counts as far

    def __post_init__(self) -> None:
        values = asdict(self)
        if not all(math.isfinite(v) and v >= 0 for v in values.values()):
            raise ValueError(f"routing terms must be finite numbers >= 0, got {values}")

    @property
    def active(self) -> bool:
        return bool(self.consistency or self.alpha_prior or self.offset_reg or self.alpha_far)

    @property
    def needs_near_gt(self) -> bool:
        return bool(self.consistency or self.alpha_prior)

    @property
    def needs_far(self) -> bool:
        return bool(self.alpha_far)

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)

    @classmethod
    def saved_values(cls, values: Optional[Dict]) -> Dict[str, float]:
        """A training config written before these terms existed trained without them: all off
        is what leaving them out meant."""
        return {**cls().to_dict(), **TERMS_ABSENT_MEAN, **(values or {})}

    def loss(self, model, logits: torch.Tensor, near_gt: bool,
             base_logits: Callable[[], torch.Tensor], valid: Optional[torch.Tensor] = None,
             far: bool = False) -> torch.Tensor:
        """The weighted terms for one prompt whose plugged decode (by `model`, a StableSam) gave
        `logits` (B, 1, H, W); `base_logits()` runs the frozen base on the same prompt; `near_gt`
        and `far` say which kind of prompt it is (`is_near_gt`, `is_far`)."""
        total = logits.new_zeros(())
        graph = list(model.routing_graph.values())  # (α, offsets) of each plugin site
        if self.offset_reg and graph:
            r = model.config.offset_range
            total = total + self.offset_reg * torch.stack([offset_penalty(o, r) for _, o in graph]).mean()
        if near_gt and self.alpha_prior and graph and model.config.use_routing:
            total = total + self.alpha_prior * torch.stack([a[:, 0].mean() for a, _ in graph]).mean()
        if far and self.alpha_far and graph and model.config.use_routing:
            total = total + self.alpha_far * torch.stack([a[:, 1].mean() for a, _ in graph]).mean()
        if near_gt and self.consistency:
            total = total + self.consistency * consistency_loss(logits, base_logits(), valid)
        return total


def box_noise_scale(box: np.ndarray, gt_box: np.ndarray) -> float:
    """The smallest s for which `box` (4,) can be a noisy-box@s draw around `gt_box` (4,) (HQ-SAM's
    noise, `stablesam.prompts.generation.noisy_boxes`): max(|Δcx| / (w/2), |Δcy| / (h/2), |Δw| / w, |Δh| / h)."""
    x0, y0, x1, y1 = (float(v) for v in gt_box)
    w, h = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
    bx0, by0, bx1, by1 = (float(v) for v in box)
    dcx, dcy = (bx0 + bx1 - x0 - x1) / 2, (by0 + by1 - y0 - y1) / 2
    dw, dh = (bx1 - bx0) - (x1 - x0), (by1 - by0) - (y1 - y0)
    return max(abs(dcx) / (w / 2), abs(dcy) / (h / 2), abs(dw) / w, abs(dh) / h)


def single_box_noise(prompts: Prompts, gt_box: np.ndarray) -> Optional[float]:
    """`box_noise_scale` of a prompt that is a single box without clicks; None for any other."""
    if prompts.boxes is None or prompts.point_coords is not None or len(prompts.boxes) != 1:
        return None
    return box_noise_scale(np.asarray(prompts.boxes[0]), gt_box)


def is_near_gt(prompts: Prompts, gt_box: np.ndarray, tolerance: float) -> bool:
    """A single box prompt without clicks whose noise scale around `gt_box` is <= tolerance."""
    noise = single_box_noise(prompts, gt_box)
    return noise is not None and noise <= tolerance + 1e-9


def is_far(prompts: Prompts, gt_box: np.ndarray, threshold: float) -> bool:
    """A prompt of clicks alone, or a single box prompt without clicks whose noise scale around
    `gt_box` is >= threshold."""
    if prompts.boxes is None:
        return prompts.point_coords is not None
    noise = single_box_noise(prompts, gt_box)
    return noise is not None and noise >= threshold - 1e-9


def consistency_loss(logits: torch.Tensor, base_logits: torch.Tensor,
                     valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean binary KL(σ(base) || σ(logits)) over the pixels of (B, 1, H, W) logits (weighted by
    `valid`, 0 on ignore pixels): 0 exactly when the logits are equal, > 0 otherwise."""
    base = base_logits.detach()
    p = torch.sigmoid(base)
    kl = p * (F.logsigmoid(base) - F.logsigmoid(logits)) + (1 - p) * (F.logsigmoid(-base) - F.logsigmoid(-logits))
    if valid is None:
        return kl.mean()
    weight = valid.expand_as(kl)
    return (kl * weight).sum() / weight.sum().clamp_min(1.0)


def offset_penalty(offsets: torch.Tensor, offset_range: float) -> torch.Tensor:
    """Mean squared offset length (..., 2) in units of offset_range: 0 for the untrained DSP."""
    return ((offsets / offset_range) ** 2).sum(dim=-1).mean()


@contextmanager
def plugins_off(model) -> Iterator[None]:
    """Within this block `model` (a StableSam) computes its frozen base."""
    before = model.plugins_enabled
    model.plugins_enabled = False
    try:
        yield
    finally:
        model.plugins_enabled = before


# Every term off: decoder tuning, or plugins trained on the mask loss alone.
OFF = RoutingTerms(consistency=0.0, alpha_prior=0.0, offset_reg=0.0, alpha_far=0.0)
