"""Augmented views of a training object, for plugins that must transfer to other images.

Plugin training reads cached image embeddings, so an augmentation is applied to the image (and
its masks) before the frozen encoder, and each view's embedding is cached like any image's: a
view is a pure function of (seed, object name, view index), so its cache entry is found again by
every later run. Each view draws, in this order:
  - a scale crop: a window of 55-100 % of each side that contains the whole object's box
    (the object stays whole, since its mask is the target), placed at random around it;
  - a horizontal flip, with probability 1/2;
  - photometric jitter: brightness and contrast x U(0.75, 1.25), saturation x U(0.7, 1.3),
    hue + U(-8, 8) degrees.
"""

from typing import Optional, Tuple

import cv2
import numpy as np

MIN_CROP = 0.55  # smallest crop side, as a share of the image side


def crop_window(mask: np.ndarray, rng: np.random.Generator) -> Tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a window of each side between MIN_CROP and 1 of the image's (never
    smaller than the object's box), that contains the object's box."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0, h, 0, w
    window = []
    for lo, hi, size in ((ys.min(), ys.max() + 1, h), (xs.min(), xs.max() + 1, w)):
        side = int(round(size * rng.uniform(MIN_CROP, 1.0)))
        side = min(size, max(side, hi - lo))
        start = int(rng.integers(max(0, hi - side), min(lo, size - side) + 1))
        window += [start, start + side]
    return tuple(window)


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter of an (H, W, 3) uint8 RGB image."""
    brightness, contrast, saturation = rng.uniform(0.75, 1.25), rng.uniform(0.75, 1.25), rng.uniform(0.7, 1.3)
    hue = rng.uniform(-8.0, 8.0)
    x = image.astype(np.float32) * brightness
    x = (x - x.mean()) * contrast + x.mean()
    hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue / 2.0) % 180.0  # OpenCV's 8-bit hue is degrees / 2
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def augmented_view(image: np.ndarray, mask: np.ndarray, ignore: Optional[np.ndarray],
                   rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """One view of (image (H, W, 3) uint8, mask (H, W) bool, ignore (H, W) bool or None): the same
    crop and flip applied to all three, the photometric jitter to the image only."""
    y0, y1, x0, x1 = crop_window(mask, rng)
    flip = rng.random() < 0.5
    parts = [image[y0:y1, x0:x1], mask[y0:y1, x0:x1], None if ignore is None else ignore[y0:y1, x0:x1]]
    if flip:
        parts = [None if p is None else p[:, ::-1] for p in parts]
    view, view_mask, view_ignore = (None if p is None else np.ascontiguousarray(p) for p in parts)
    return photometric(view, rng), view_mask, view_ignore
