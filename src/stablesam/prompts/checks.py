"""Whether a prompt fits its image: a box inside it and not empty, a click inside it (in
original-image pixels, inclusive pixel indices as `stablesam.prompts.generation`)."""

from typing import Optional, Sequence, Tuple


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
