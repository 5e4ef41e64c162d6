"""Whether a prompt fits its image: a box inside it and not empty, a click inside it (in
original-image pixels, inclusive pixel indices as `stablesam.prompts.generation`)."""

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..data.images import InputError
from ..limits import CLICKS, check_image_side


def point_inside(x: float, y: float, size: Tuple[int, int]) -> bool:
    """Whether the click (x, y) lies on an image of size (H, W)."""
    h, w = size
    return 0 <= x <= w - 1 and 0 <= y <= h - 1


def box_problem(box: Sequence[float], size: Tuple[int, int]) -> Optional[str]:
    """Why (x0, y0, x1, y1) is no box prompt for an image of size (H, W) (inclusive pixel
    indices, as `prompts`), or None when it is one."""
    x0, y0, x1, y1 = box
    h, w = size
    if x1 <= x0 or y1 <= y0:
        return "inverted or empty box (need x0 < x1 and y0 < y1)"
    if x0 < 0 or y0 < 0 or x1 > w - 1 or y1 > h - 1:
        return f"outside the {w}x{h} image (x in 0..{w - 1}, y in 0..{h - 1})"
    return None


# --- the Python API's prompts (`StableSamPredictor.predict` / `predict_batch`) -----------------
MAX_COORDINATE = 1e7  # px: beyond any image (25 MP at most), and far from float32's overflow in the resize


def check_image(image: np.ndarray, target: Optional[int]) -> None:
    """InputError unless `image` is an (H, W, 3) array whose sides survive a resize of its long
    side to `target` px (None: the family does not keep the aspect ratio)."""
    shape = getattr(image, "shape", None)
    if shape is None:  # a PIL image (SAM 2 takes them): its (W, H) size
        size = getattr(image, "size", None)
        if not (isinstance(size, tuple) and len(size) == 2):
            return
        shape = (size[1], size[0], 3)
    if len(shape) != 3 or min(shape[:2]) < 1:
        raise InputError(f"the image must be an (H, W, 3) RGB array, got shape {tuple(shape)}")
    if target:
        check_image_side(int(shape[0]), int(shape[1]), int(target))


def as_numbers(values: Any, what: str) -> np.ndarray:
    """`values` as a finite float64 array, or InputError (strings, NaN, inf, absurd magnitudes)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must hold numbers, got {str(values)[:60]!r}") from None
    if not np.isfinite(array).all():
        raise InputError(f"{what} must be finite numbers, got {np.array2string(array.ravel()[:8], precision=4)}")
    if np.abs(array).max(initial=0) > MAX_COORDINATE:
        raise InputError(f"{what} lie beyond {MAX_COORDINATE:g} px (coordinates are pixels of the image)")
    return array


def check_boxes(boxes: Any) -> None:
    """InputError unless each (..., 4) XYXY box is finite with x0 <= x1 and y0 <= y1."""
    b = as_numbers(boxes, "box coordinates")
    if b.size % 4:
        raise InputError(f"boxes must be 4 numbers x0, y0, x1, y1 each, got shape {b.shape}")
    b = b.reshape(-1, 4)
    flipped = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if flipped.any():
        x0, y0, x1, y1 = b[int(np.flatnonzero(flipped)[0])]
        raise InputError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is reversed: need x0 <= x1 and y0 <= y1 (XYXY)")


def check_points(coords: Any, labels: Any, padding: bool = False) -> None:
    """InputError unless the clicks (N, k, 2) are finite, at most `limits.CLICKS` per prompt, with
    labels (N, k) 1 (foreground) or 0 (background) (or -1, a padding click, where `padding`)."""
    c = as_numbers(coords, "point coordinates")
    allowed = (-1, 0, 1) if padding else (0, 1)
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iufb" or not np.isin(lab, allowed).all():
        bad = [v for v in lab.ravel().tolist() if v not in allowed][:3] if lab.dtype.kind in "iufb" else \
            str(lab.ravel()[:3])[:60]
        raise InputError(f"point labels must be 1 (foreground) or 0 (background)"
                         f"{' or -1 (padding)' if padding else ''}, got {bad}")
    if c.ndim >= 2 and c.shape[-2] > CLICKS.high:
        raise InputError(f"{c.shape[-2]} clicks in one prompt: at most {int(CLICKS.high)} ({CLICKS.why})")


def check_prompt(point_coords: Any, point_labels: Any, box: Any) -> None:
    """`predict`'s prompt (SamPredictor's shapes: clicks (k, 2) with labels (k,), a box (4,) or
    (1, 4)) checked as the command line checks it; InputError naming what is wrong."""
    if point_coords is not None:
        if point_labels is None:
            raise InputError("point_labels must be supplied with point_coords")
        coords, labels = as_numbers(point_coords, "point coordinates"), np.asarray(point_labels)
        if coords.ndim != 2 or coords.shape[1] != 2 or labels.shape != coords.shape[:1]:
            raise InputError(f"point_coords must be (k, 2) with point_labels (k,), got {coords.shape} and "
                             f"{labels.shape}")
        check_points(coords[None], labels[None], padding=True)  # -1: SAM's padding point
    if box is not None:
        if as_numbers(box, "box coordinates").size != 4:
            raise InputError(f"box must be 4 numbers x0, y0, x1, y1, got shape {np.shape(box)}")
        check_boxes(box)
