"""Prompts from napari's own layers: rectangles in a Shapes layer, clicks in a Points layer.

Layer coordinates are (..., y, x) in the image's pixel grid (the widget gives the prompt layers
the image layer's scale and translate). On a stack, only the shapes and points on the current
slice count. The object's box is one rectangle (the one drawn or edited last; any other shape
counts by its bounding box); a rectangle that reaches past the image is clipped to it, one that
misses the image entirely is an InputError. Clicks are positive or negative by the Points layer's
`positive` feature, in the order they were placed.
"""

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..data.images import InputError
from .engine import Prompt

POSITIVE = "positive"  # the Points layer's feature: True = object (label 1), False = background (0)


def on_slice(coords: np.ndarray, index: Tuple[int, ...]) -> bool:
    """Whether vertices (n, ndim) lie on the plane `index` of the leading axes."""
    if not index:
        return True
    lead = np.rint(np.asarray(coords, float)[:, : len(index)])
    return bool(np.all(lead == np.asarray(index, float)))


def shape_box(vertices: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """A shape's vertices (n, ndim) in (..., y, x) -> its bounding box [x0, y0, x1, y1], clipped
    to an image of size (H, W)."""
    yx = np.asarray(vertices, float)[:, -2:]
    (y0, x0), (y1, x1) = yx.min(axis=0), yx.max(axis=0)
    h, w = size
    if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
        raise InputError(f"the rectangle x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f} lies outside the "
                         f"{w}x{h} image")
    return np.array([max(x0, 0.0), max(y0, 0.0), min(x1, w - 1.0), min(y1, h - 1.0)])


def current_box(shapes: Any, index: Tuple[int, ...], size: Tuple[int, int], active: Optional[int] = None
                ) -> Optional[np.ndarray]:
    """The object's box from a Shapes layer: shape `active` if it is on the slice, else the last
    shape on the slice; None without one."""
    if shapes is None:
        return None
    data: Sequence[np.ndarray] = shapes.data
    candidates = [i for i, v in enumerate(data) if on_slice(v, index)]
    if not candidates:
        return None
    chosen = active if active in candidates else candidates[-1]
    return shape_box(data[chosen], size)


def current_clicks(points: Any, index: Tuple[int, ...]) -> Tuple[np.ndarray, np.ndarray]:
    """Clicks on the slice from a Points layer -> (coords (k, 2) XY, labels (k,) 1 or 0)."""
    if points is None or not len(points.data):
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    data = np.asarray(points.data, float)
    keep = np.array([on_slice(row[None], index) for row in data], bool)
    if POSITIVE in points.features:
        positive = np.asarray(points.features[POSITIVE], bool)
    else:
        positive = np.ones(len(data), bool)
    coords = data[keep][:, -2:][:, ::-1]
    return np.ascontiguousarray(coords), positive[keep].astype(np.int64)


def read_prompt(shapes: Any, points: Any, index: Tuple[int, ...], size: Tuple[int, int],
                active: Optional[int] = None) -> Prompt:
    """The current object's prompt on the slice `index` of an image of size (H, W)."""
    box = current_box(shapes, index, size, active)
    coords, labels = current_clicks(points, index)
    return Prompt(box, coords, labels)
