"""SAM's interactive training simulation (Kirillov et al. 2023, section 3 and appendix A).

SAM learned to take corrections: after the first prompt (a jittered box or one click), each
round adds one click sampled from the error region between the previous prediction and the
ground truth (positive in a false negative, negative in a false positive), and the previous
round's unthresholded low-res logits go back in as `mask_input`; two rounds add no click (one
somewhere in the middle, one at the end), so that the model also learns to refine from its own
mask; the loss (focal x 20 + Dice + MSE of the IoU head) is taken on every round. A single
first click is decoded multimask and supervised with the best of its three masks, which is also
the one fed back. `mask_input` is detached between rounds, as in SAM.

Clicks are drawn in the low-res logit frame (4h x 4w cells of the padded input square), inside
the image and off ignore pixels: uniformly over the error region, or, for a share of the
clicks, at the error region's deepest point (the RITM user of `stablesam.evaluation.clicks`, which the
click benchmark simulates).
"""

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from ..evaluation.clicks import next_click
from .losses import dice_loss, focal_loss, mask_ious
from ..prompts.generation import Prompts, fix_boxes, mask_to_box, point_labels, sam_jitter_boxes, sample_points

FOCAL_WEIGHT = 20.0  # SAM: focal and dice in a 20 : 1 ratio

# decode(points ((1, k, 2), (1, k)) or None, boxes (1, 4) or None, mask_input (1, 1, 4h, 4w) or None,
#        multimask) -> (low-res logits (1, M, 4h, 4w), IoU predictions (1, M)); input-frame coordinates.
Decode = Callable[[Optional[Tuple[torch.Tensor, torch.Tensor]], Optional[torch.Tensor], Optional[torch.Tensor], bool],
                  Tuple[torch.Tensor, torch.Tensor]]


def first_prompt(mask: np.ndarray, rng: np.random.Generator, box_share: float = 0.5) -> Prompts:
    """The opening prompt of a simulated session on an (H, W) mask: the tight box with SAM's
    jitter (box_share of the time) or one click uniform over the object."""
    if rng.random() < box_share:
        box = fix_boxes(mask_to_box(mask)[None], mask.shape)[0]
        return Prompts(boxes=sam_jitter_boxes(box, 1, rng, mask.shape))
    return Prompts(point_coords=sample_points(mask, 1, 1, rng), point_labels=point_labels(1, 1))


def error_click(gt: np.ndarray, pred: np.ndarray, keep: np.ndarray, rng: np.random.Generator,
                deepest_share: float = 0.5) -> Optional[Tuple[int, int, bool]]:
    """One corrective click on (h, w) boolean maps: (x, y, positive), or None without any error.

    Only `keep` pixels can be clicked. With probability deepest_share the click goes to the error
    region's deepest point (`stablesam.evaluation.clicks.next_click`), otherwise uniformly over the error
    region (false negatives and false positives together); positive iff it lies in a false negative.
    """
    fn, fp = gt & ~pred & keep, ~gt & pred & keep
    if not fn.any() and not fp.any():
        return None
    if rng.random() < deepest_share:
        click = next_click(gt, pred, ignore=~keep)
        if click is not None:
            return click.x, click.y, click.positive
    idx = np.flatnonzero(fn | fp)
    y, x = divmod(int(idx[rng.integers(len(idx))]), gt.shape[1])
    return x, y, bool(fn[y, x])


def image_cells(shape: Tuple[int, int], img_size: int, low: Tuple[int, int]) -> np.ndarray:
    """(low_h, low_w) boolean: the low-res cells that lie wholly inside the resized (H, W) image."""
    nh, nw = ResizeLongestSide.get_preprocess_shape(shape[0], shape[1], img_size)
    cells = np.zeros(low, dtype=bool)
    cells[: nh * low[0] // img_size, : nw * low[1] // img_size] = True
    return cells


def round_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor,
               valid: Optional[torch.Tensor]) -> Tuple[torch.Tensor, int]:
    """SAM's loss of one round: (min over masks of focal x 20 + Dice, plus the IoU head's MSE;
    the index of that best mask). logits (1, M, H, W), iou_pred (1, M), target/valid (1, 1, H, W)."""
    masks = logits[0][:, None]  # (M, 1, H, W)
    dice = torch.stack([dice_loss(masks[i:i + 1], target, valid) for i in range(len(masks))])
    per_mask = FOCAL_WEIGHT * focal_loss(masks, target, valid) + dice
    best = int(torch.argmin(per_mask.detach()))
    iou = torch.nn.functional.mse_loss(iou_pred[0].float(), mask_ious(masks, target, valid))
    return per_mask[best] + iou, best


def interactive_loss(decode: Decode, first: Prompts, to_input: Callable[[np.ndarray], np.ndarray],
                     target: torch.Tensor, valid: Optional[torch.Tensor], cells: np.ndarray,
                     img_size: int, rng: np.random.Generator, clicks: int = 8,
                     deepest_share: float = 0.5) -> Tuple[torch.Tensor, List[Tuple[int, int, bool]]]:
    """Mean loss over the rounds of one simulated session: the first prompt, `clicks` corrective
    clicks and two rounds without a new click. Returns (loss, the clicks in low-res cells).

    first: the opening prompt in image pixels; to_input maps (..., 2) image coordinates to the
    model's input frame; target, valid: (1, 1, 4h, 4w) in the low-res frame; cells: where a
    click may go (`image_cells`, less the ignore pixels here).
    """
    device = target.device
    keep = cells if valid is None else cells & (valid[0, 0].cpu().numpy() > 0.5)
    gt = target[0, 0].cpu().numpy() > 0.5
    cell = img_size / target.shape[-1]  # input pixels per low-res cell
    boxes = None if first.boxes is None else torch.as_tensor(to_input(first.boxes.reshape(-1, 2)).reshape(1, 4),
                                                            dtype=torch.float, device=device)
    coords: List[List[float]] = [] if first.point_coords is None else to_input(first.point_coords[0]).tolist()
    labels: List[int] = [] if first.point_labels is None else [int(v) for v in first.point_labels[0]]
    still = {clicks + 2, int(rng.integers(1, clicks + 2))}  # rounds that add no click
    mask_input, pred, losses, made = None, None, [], []
    for r in range(clicks + 3):
        if r > 0 and r not in still:
            click = error_click(gt, pred, keep, rng, deepest_share)
            if click is not None:
                made.append(click)
                coords.append([click[0] * cell + (cell - 1) / 2, click[1] * cell + (cell - 1) / 2])
                labels.append(int(click[2]))
        points = None if not coords else (torch.tensor([coords], dtype=torch.float, device=device),
                                          torch.tensor([labels], dtype=torch.int, device=device))
        multimask = r == 0 and boxes is None and len(coords) == 1
        logits, iou_pred = decode(points, boxes, mask_input, multimask)
        loss, best = round_loss(logits, iou_pred, target, valid)
        losses.append(loss)
        mask_input = logits[:, best:best + 1].detach()
        pred = mask_input[0, 0].cpu().numpy() > 0
    return torch.stack(losses).mean(), made
