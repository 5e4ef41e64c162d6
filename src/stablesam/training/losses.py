"""Mask losses shared by `stablesam train` and the tiny-SAM trainer.

`valid` is an optional weight map of the target's shape: 1 where the ground truth is known, 0 on
ignore pixels (a trimap's border band, DAVIS's void), fractional where a downsampled ignore
region covers part of a pixel. Ignored pixels add nothing to either loss: they count neither as
foreground nor as background.
"""

from typing import Optional

import torch
from torch.nn import functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Soft Dice loss, mean over the batch. logits, target, valid: (B, 1, H, W) (valid may broadcast)."""
    p = torch.sigmoid(logits)
    t = target
    if valid is not None:
        p, t = p * valid, t * valid
    p, t = p.flatten(1), t.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-pixel BCE averaged over the valid pixels of each item, then over the batch -> (B,) per item."""
    bce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    if valid is None:
        return bce.flatten(1).mean(1)
    w = valid.expand_as(bce).flatten(1)
    return (bce.flatten(1) * w).sum(1) / w.sum(1).clamp(min=1e-6)


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None,
                  dice_weight: float = 1.0) -> torch.Tensor:
    """BCE + dice_weight * Dice for (B, 1, H, W) logits; a scalar (mean over the batch)."""
    return bce_loss(logits, target, valid).mean() + dice_weight * dice_loss(logits, target, valid)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None,
               alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """SAM's sigmoid focal loss (torchvision's), averaged over the valid pixels of each item -> (B,)."""
    from torchvision.ops import sigmoid_focal_loss

    focal = sigmoid_focal_loss(logits, target.expand_as(logits), alpha=alpha, gamma=gamma, reduction="none")
    if valid is None:
        return focal.flatten(1).mean(1)
    w = valid.expand_as(focal).flatten(1)
    return (focal.flatten(1) * w).sum(1) / w.sum(1).clamp(min=1e-6)


@torch.no_grad()
def mask_ious(logits: torch.Tensor, target: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """IoU of each thresholded mask (logits > 0) with target > 0.5, on valid pixels: what SAM's IoU
    head learns to predict. logits (M, 1, H, W), target and valid (1, 1, H, W) -> (M,); 1 when both are empty."""
    keep = torch.ones_like(target[0, 0], dtype=torch.bool) if valid is None else valid[0, 0] > 0.5
    pred, gt = (logits[:, 0] > 0) & keep, (target[0] > 0.5) & keep
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
