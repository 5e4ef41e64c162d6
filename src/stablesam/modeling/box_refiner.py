"""Re-prompt with the model's own mask: a loose box or a lone click becomes a fitting box.

With `PluginConfig.refine` "box" each prompt is decoded twice. The first pass is the usual one;
the box of its best-scored mask, widened by `refine_margin` of its size on each side, then
replaces the prompt's own box (a click-only prompt gains one) and the decoder runs again with the
prompt's clicks kept. A loose box draws a mask around the object, whose box is much tighter than
the prompt; K wobbling prompts give nearly the same box, so their masks agree (stability). The
margin keeps a mask that missed a rim of the object from cutting that rim off for good.
`refine_below` leaves boxes that already fit their first mask (box IoU at or above it) with the
first pass's output, bit for bit, and `refine_clicks` does the same for prompts of more clicks
than it (their clicks already span the object; a box from one mask of them cost more than it
gave). Nothing here is trained.
"""

from typing import Optional, Tuple

import torch


def mask_boxes(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bounding boxes of B masks.

    masks: (B, H, W) bool. Returns boxes (B, 4) XYXY in the masks' pixel frame, pixel column x
    spanning [x, x + 1) (so a one-pixel mask at (x, y) gives (x, y, x + 1, y + 1)), and (B,) bool:
    the mask is not empty (an empty mask's box is all zeros).
    """
    h, w = masks.shape[-2:]
    cols, rows = masks.any(dim=1), masks.any(dim=2)  # (B, W), (B, H)
    xs = torch.arange(w, device=masks.device, dtype=torch.float32)
    ys = torch.arange(h, device=masks.device, dtype=torch.float32)
    big = float(max(h, w))
    boxes = torch.stack([torch.where(cols, xs, big).amin(dim=1), torch.where(rows, ys, big).amin(dim=1),
                         torch.where(cols, xs + 1, -big).amax(dim=1), torch.where(rows, ys + 1, -big).amax(dim=1)],
                        dim=1)
    nonempty = cols.any(dim=1)
    return torch.where(nonempty[:, None], boxes, torch.zeros_like(boxes)), nonempty


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a[i] and b[i], both (B, 4) XYXY -> (B,); 0 where both are empty."""
    ix = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    iy = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = ix * iy
    area = lambda x: (x[:, 2] - x[:, 0]).clamp(min=0) * (x[:, 3] - x[:, 1]).clamp(min=0)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp(min=1e-6)


def first_mask_boxes(logits: torch.Tensor, scores: torch.Tensor,
                     input_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Boxes of the first pass's masks.

    logits: low-res mask logits (B, M, h, w) covering the model's square input frame of side
    `input_size`; scores: (B, M), the best-scored mask is the one boxed. Returns boxes (B, 4) in
    the input frame and (B,) bool: the mask is not empty.
    """
    best = logits[torch.arange(len(logits)), scores.argmax(dim=1)] > 0  # (B, h, w)
    boxes, nonempty = mask_boxes(best)
    return boxes * (input_size / best.shape[-1]), nonempty


def widen(boxes: torch.Tensor, margin: float, input_size: int) -> torch.Tensor:
    """Boxes (B, 4) widened by `margin` of their width / height on each side, clipped to the frame."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=boxes.dtype, device=boxes.device)
    return (boxes + margin * size * sign).clamp(0, input_size)


def rows_to_refine(first_boxes: torch.Tensor, prompt_boxes: Optional[torch.Tensor],
                   point_labels: Optional[torch.Tensor], nonempty: torch.Tensor, below: float,
                   max_clicks: int) -> torch.Tensor:
    """Which prompts take the second pass: those with a non-empty first mask and either a box
    whose IoU with the box of that mask (`first_mask_boxes`) is below `below`, or no box and at
    most `max_clicks` clicks (point_labels (B, k); labels < 0 are padding). -> (B,) bool."""
    if prompt_boxes is None:
        clicks = (point_labels >= 0).sum(dim=1) if point_labels is not None else torch.zeros_like(nonempty, dtype=torch.long)
        return nonempty & (clicks <= max_clicks)
    fit = box_iou(prompt_boxes.reshape(-1, 4).to(first_boxes.dtype), first_boxes)
    return nonempty & (fit < below)
