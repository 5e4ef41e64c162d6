"""`stablesam segment`: one image, a box and/or clicks, a mask PNG (and an overlay)."""

import io
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .reports import atomic_write


class InputError(ValueError):
    """Bad user input, reported in one line."""


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or InputError naming the problem."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            return np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable image ({type(e).__name__})") from None


def parse_numbers(text: str, n: Tuple[int, ...], what: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in n:
        raise InputError(f"bad {what} {text!r}")
    return values


def box_problem(box, size: Tuple[int, int]) -> Optional[str]:
    """Why (x0, y0, x1, y1) is no box prompt for an image of size (H, W) (inclusive pixel
    indices, as `prompts`), or None when it is one."""
    x0, y0, x1, y1 = box
    h, w = size
    if x1 <= x0 or y1 <= y0:
        return "inverted or empty box (need x0 < x1 and y0 < y1)"
    if x0 < 0 or y0 < 0 or x1 > w - 1 or y1 > h - 1:
        return f"outside the {w}x{h} image (x in 0..{w - 1}, y in 0..{h - 1})"
    return None


def parse_box(text: str, size: Tuple[int, int]) -> np.ndarray:
    """'x0,y0,x1,y1' in pixels of an image of size (H, W) -> (4,)."""
    box = parse_numbers(text, (4,), "--box (expected x0,y0,x1,y1)")
    problem = box_problem(box, size)
    if problem:
        raise InputError(f"--box {text}: {problem}")
    return np.array(box)


def parse_point(text: str, size: Tuple[int, int]) -> Tuple[List[float], int]:
    """'x,y[,label]' (label 1 = foreground, 0 = background) -> ([x, y], label)."""
    values = parse_numbers(text, (2, 3), "--point (expected x,y or x,y,label)")
    label = int(values[2]) if len(values) == 3 else 1
    if len(values) == 3 and values[2] not in (0, 1):
        raise InputError(f"--point {text}: label must be 1 (foreground) or 0 (background)")
    h, w = size
    x, y = values[:2]
    if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
        raise InputError(f"--point {text}: outside the {w}x{h} image")
    return [x, y], label


def overlay(image: np.ndarray, mask: np.ndarray, box: Optional[np.ndarray], points, labels) -> np.ndarray:
    """The image with the mask tinted and the prompt drawn."""
    out = image.copy()
    tint = np.array([30, 144, 255], np.uint8)
    out[mask] = (0.45 * out[mask] + 0.55 * tint).astype(np.uint8)
    edges = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = tint
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 230, 0), 2)
    for (x, y), label in zip(points, labels):
        cv2.circle(out, (int(round(x)), int(round(y))), 5, (0, 230, 0) if label else (230, 0, 0), -1)
        cv2.circle(out, (int(round(x)), int(round(y))), 5, (255, 255, 255), 1)
    return out


def write_png(path: Path, array: np.ndarray) -> None:
    def write(f):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        f.write(buf.getvalue())

    atomic_write(path, write)
