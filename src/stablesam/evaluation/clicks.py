"""The interactive protocol of f-BRS / RITM: a simulated user adds corrective clicks.

The user looks at the current mask and clicks where it is most wrong: the pixel of the false
negative (missed) or false positive (extra) region that lies farthest from that region's
boundary (L2 distance transform; the image border counts as boundary), positive in a missed
region, negative in an extra one; when both are equally far, negative (RITM's rule: positive
only if strictly farther). Ignore pixels are neither missed nor extra, and an already clicked
pixel is never clicked again. Ties between pixels go to the first in row-major order. There is
no randomness: the same model gives the same clicks.

SAM is run the way those papers run it: the first click with multimask output, keeping the mask
with the best predicted IoU; each later click with all clicks so far and the previous low-res
logits as `mask_input`, single-mask output.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .metrics import mask_iou


@dataclass(frozen=True)
class Click:
    x: int
    y: int
    positive: bool


def next_click(gt: np.ndarray, pred: np.ndarray, ignore: Optional[np.ndarray] = None,
               clicked: Sequence[Click] = ()) -> Optional[Click]:
    """Where the simulated user clicks next on (H, W) masks; None if the prediction is perfect."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    keep = np.ones_like(gt) if ignore is None else ~np.asarray(ignore, bool)
    fn, fp = gt & ~pred & keep, ~gt & pred & keep
    fn_dt, fp_dt = _inner_distance(fn), _inner_distance(fp)
    for c in clicked:  # a clicked pixel is never chosen again (RITM's not_clicked_map)
        fn_dt[c.y, c.x] = fp_dt[c.y, c.x] = 0
    if not fn_dt.any() and not fp_dt.any():
        return None
    fn_max, fp_max = fn_dt.max(), fp_dt.max()
    positive = bool(fn_max > fp_max)
    dt, best = (fn_dt, fn_max) if positive else (fp_dt, fp_max)
    y, x = np.argwhere(dt == best)[0]
    return Click(int(x), int(y), positive)


def _inner_distance(region: np.ndarray) -> np.ndarray:
    """L2 distance of each region pixel to the nearest non-region pixel, the border counting as one."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


@dataclass
class ClickRun:
    """One object's click sequence and the IoU after each click (ious[k - 1] after k clicks)."""

    clicks: List[Click] = field(default_factory=list)
    ious: List[float] = field(default_factory=list)


def run_clicks(predictor, gt: np.ndarray, ignore: Optional[np.ndarray] = None, max_clicks: int = 20,
               stop_at: Optional[float] = None) -> ClickRun:
    """Simulate up to max_clicks corrective clicks on the predictor's current image.

    predictor: a `StableSamPredictor` (or `SamPredictor`) with the image set. stop_at: stop once
    the IoU reaches it (the later IoUs are then taken to stay there, as the protocol reads them);
    None runs all max_clicks.
    """
    run = ClickRun()
    pred = np.zeros_like(gt, dtype=bool)
    low_res = None
    for k in range(max_clicks):
        click = next_click(gt, pred, ignore, run.clicks)
        if click is None:  # perfect already: every further click keeps it
            run.ious.extend([run.ious[-1] if run.ious else 1.0] * (max_clicks - k))
            break
        run.clicks.append(click)
        coords = np.array([[c.x, c.y] for c in run.clicks], float)
        labels = np.array([int(c.positive) for c in run.clicks])
        first = k == 0
        masks, scores, logits = predictor.predict(point_coords=coords, point_labels=labels,
                                                  mask_input=None if first else low_res,
                                                  multimask_output=first)
        best = int(np.argmax(scores)) if first else 0
        pred, low_res = masks[best], logits[best:best + 1]
        run.ious.append(mask_iou(pred, gt, ignore))
        if stop_at is not None and run.ious[-1] >= stop_at:
            run.ious.extend([run.ious[-1]] * (max_clicks - k - 1))
            break
    return run


def number_of_clicks(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> Tuple[int, bool]:
    """(NoC, failed): the first k with IoU >= threshold after k clicks; (max_clicks, True) if
    the object never reaches it within max_clicks."""
    for k, iou in enumerate(ious[:max_clicks], 1):
        if iou >= threshold:
            return k, False
    return max_clicks, True
