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
