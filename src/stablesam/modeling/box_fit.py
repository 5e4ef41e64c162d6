"""How tightly a box prompt fits the mask a model draws from it: a prompt-quality signal.

A tight box touches the object on all four sides; a loose side leaves a margin the mask does not
fill, a cut side clips it. The IoU of the box with the bounding box of the mask the frozen SAM
draws from it separates ground-truth boxes from `noisy-box@0.4` ones far better than SAM's own
predicted IoU does (`scripts/quality_signal.py`), so the routing input "fit" reads it.
"""

from typing import Optional

import torch
from torch import nn

from .box_refiner import box_iou, first_mask_boxes, mask_boxes


def box_fit(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of each box with the bounding box of its mask.

    masks: (B, H, W) bool; boxes: (B, 4) XYXY in the masks' pixel frame (a pixel column x spans
    [x, x + 1)). Returns (B,) in [0, 1]; 0 for an empty mask.
    """
    mask_box, nonempty = mask_boxes(masks)
    fit = box_iou(boxes, mask_box.to(boxes.dtype))
    return torch.where(nonempty, fit, torch.zeros_like(fit))


class FitGate(nn.Module):
    """The fit's say in α: a term on the DRP's logit for the deformed features, for prompts with
    a box (clicks alone: 0), with learnt s and c.

    mode "both": s · (c − fit), starting at s = 8, c = 0.75 (the midpoint of the fits of
    ground-truth and `noisy-box@0.4` boxes on the development sets), so a loose box starts with
    more of the DSP than a tight one. mode "close": −s · max(0, fit − c), starting at s = 16,
    c = 0.75: only boxes tighter than c lose DSP (a ground-truth box of fit 0.9 starts at −2.4),
    looser ones are left to the DRP's MLP, so a set where even good boxes fit loosely (cluttered
    scenes) is routed as without the gate. The gate needs no zero start: with the DSP at identity
    the mix is x_p whatever α is, so the untrained plugin is still SAM.
    """

    START = {"both": (8.0, 0.75), "close": (16.0, 0.75)}

    def __init__(self, mode: str = "both"):
        super().__init__()
        if mode not in self.START:
            raise ValueError(f"fit gate mode must be one of {tuple(self.START)}, got {mode!r}")
        self.mode = mode
        scale, center = self.START[mode]
        self.scale = nn.Parameter(torch.tensor(scale))
        self.center = nn.Parameter(torch.tensor(center))

    def forward(self, fit: torch.Tensor, has_box: torch.Tensor) -> torch.Tensor:
        """fit, has_box: (B,) -> (B, 2) logits to add to the DRP's (deformed, regular)."""
        margin = self.center - fit
        if self.mode == "close":
            margin = margin.clamp(max=0)
        z = self.scale * margin * has_box
        return torch.stack([z, torch.zeros_like(z)], dim=-1)


def prompt_fit(masks: torch.Tensor, scores: torch.Tensor, boxes: Optional[torch.Tensor], input_size: int) -> torch.Tensor:
    """The routing input "fit" of B prompts from one decoder pass.

    masks: low-res logits (B, M, h, w) covering the model's square input frame of side
    `input_size`; scores: (B, M), the best-scored mask is the one measured; boxes: the prompts'
    boxes (B, 4) in the input frame, None when they have none. Returns (B, 2) = (fit, has a box),
    zeros without boxes.
    """
    if boxes is None:
        return masks.new_zeros((len(masks), 2))
    first, nonempty = first_mask_boxes(masks, scores, input_size)
    boxes = boxes.reshape(-1, 4).to(first.dtype)
    if len(boxes) != len(first):
        raise RuntimeError(f"the routing input 'fit' got {len(boxes)} boxes for {len(first)} prompts")
    fit = box_iou(boxes, first)
    fit = torch.where(nonempty, fit, torch.zeros_like(fit))
    return torch.stack([fit, torch.ones_like(fit)], dim=-1).to(masks.dtype)
