"""Drawing helpers the report figures share: a prompt on an axis, a short model name, the
window around an object."""

import re

import numpy as np


def draw_prompt(ax, prompts, dashed: bool = False) -> None:
    """The first prompt of `prompts`; dashed: a thin white dashed box only (a reference box)."""
    if prompts.boxes is not None:
        from matplotlib.patches import Rectangle

        x0, y0, x1, y1 = prompts.boxes[0]
        style = dict(edgecolor="white", linewidth=1, linestyle="--") if dashed else dict(edgecolor="lime", linewidth=2)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **style))
    if prompts.point_coords is not None and not dashed:
        pts, lab = prompts.point_coords[0], prompts.point_labels[0]
        ax.scatter(pts[lab == 1, 0], pts[lab == 1, 1], c="lime", s=60, edgecolors="black", marker="*")
        ax.scatter(pts[lab == 0, 0], pts[lab == 0, 1], c="red", s=60, edgecolors="black", marker="*")


def short_name(spec: str) -> str:
    """A model name for figures: paths inside a SPEC shortened to their file names."""
    return re.sub(r"(?<=[:=])[^+]*[/\\]([^/\\+]+)", r"\1", spec)


def view_window(mask: np.ndarray, prompts, margin: float = 0.35) -> tuple:
    """(x0, y0, x1, y1) around the object and its prompt, so small objects stay visible."""
    ys, xs = np.nonzero(mask)
    xs, ys = list(xs), list(ys)
    if prompts.boxes is not None:
        xs += [prompts.boxes[0][0], prompts.boxes[0][2]]; ys += [prompts.boxes[0][1], prompts.boxes[0][3]]
    if prompts.point_coords is not None:
        xs += list(prompts.point_coords[0][:, 0]); ys += list(prompts.point_coords[0][:, 1])
    h, w = mask.shape
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    side = max(x1 - x0, y1 - y0, 32) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (max(-0.5, cx - side / 2), max(-0.5, cy - side / 2),
            min(w - 0.5, cx + side / 2), min(h - 0.5, cy + side / 2))
