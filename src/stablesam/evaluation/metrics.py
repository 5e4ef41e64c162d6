"""Mask IoU, boundary IoU (HQ-SAM convention) and prompt stability.

Masks are boolean or 0/1 arrays (H, W). `ignore` is an optional bool (H, W) array of pixels
excluded from both masks (e.g. void pixels of the ground truth). IoU of two empty sets is 1.
"""

from typing import Optional

import cv2
import numpy as np


def _as_bool(mask: np.ndarray, name: str, shape: Optional[tuple] = None) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {mask.shape}")
    if shape is not None and mask.shape != shape:
        raise ValueError(f"{name} has shape {mask.shape}, expected {shape}")
    return mask.astype(bool, copy=False)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def mask_iou(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> float:
    """IoU of two (H, W) masks, ignore pixels excluded; 1.0 if both are empty."""
    gt = _as_bool(gt, "gt")
    pred = _as_bool(pred, "pred", gt.shape)
    if ignore is not None:
        keep = ~_as_bool(ignore, "ignore", gt.shape)
        pred, gt = pred & keep, gt & keep
    return _iou(pred, gt)


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Inner boundary band (H, W) bool of a mask, as HQ-SAM's `mask_to_boundary`.

    d = max(1, round(dilation_ratio * diagonal)); the mask is zero-padded by 1 (so the image
    border counts as background), eroded d times by a 3x3 kernel, cropped; boundary = mask
    minus erosion.
    """
    mask = _as_bool(mask, "mask")
    h, w = mask.shape
    d = max(1, int(round(dilation_ratio * np.sqrt(h**2 + w**2))))
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1 : h + 1, 1 : w + 1]
    return mask & ~eroded.astype(bool)


def boundary_iou(
    pred: np.ndarray,
    gt: np.ndarray,
    dilation_ratio: float = 0.02,
    ignore: Optional[np.ndarray] = None,
) -> float:
    """Boundary IoU (HQ-SAM convention) of two (H, W) masks; 1.0 if both boundaries are empty.

    Boundaries are computed on the full masks, then ignore pixels are dropped from both
    (zeroing ignore pixels first would invent boundaries along the edges of void regions).
    """
    gt = _as_bool(gt, "gt")
    pred = _as_bool(pred, "pred", gt.shape)
    pb, gb = mask_to_boundary(pred, dilation_ratio), mask_to_boundary(gt, dilation_ratio)
    if ignore is not None:
        keep = ~_as_bool(ignore, "ignore", gt.shape)
        pb, gb = pb & keep, gb & keep
    return _iou(pb, gb)


def stability(masks: np.ndarray, ignore: Optional[np.ndarray] = None) -> Optional[float]:
    """Mean IoU over all K(K-1)/2 pairs of masks (K, H, W); None if K < 2."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be 3-D (K, H, W), got shape {masks.shape}")
    k = masks.shape[0]
    if k < 2:
        return None
    flat = masks.reshape(k, -1).astype(bool, copy=False)
    if ignore is not None:
        flat = flat[:, ~_as_bool(ignore, "ignore", masks.shape[1:]).reshape(-1)]
    # float32 sums of 0/1 are exact below 2**24 pixels.
    dtype = np.float32 if flat.shape[1] < 2**24 else np.float64
    m = flat.astype(dtype)
    inter = m @ m.T
    area = np.diag(inter)
    union = area[:, None] + area[None, :] - inter
    iou = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    return float(iou[np.triu_indices(k, 1)].astype(np.float64).mean())
