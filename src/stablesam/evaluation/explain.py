"""`stablesam eval --explain N`: where the mask token looks, SAM against Stable-SAM.

For each kept object and prompt (the first of its K, e.g. a noisy box): the image with the
prompt, then for each SAM-family model the head-averaged layer-2 token-to-image attention of
the single-mask token over the embedding grid (brighter = more attention), the object's outline,
the share of attention inside the object, and for Stable-SAM the DSP's sampling offsets Δp
(arrows, every few cells, in image pixels).
"""

from pathlib import Path
from typing import List

import numpy as np

from ..fileio import save_figure
from .figures import draw_prompt, short_name, view_window
from .prompt_eval import EvalResult


def _upsample(grid_map: np.ndarray, shape: tuple, img_size: int) -> np.ndarray:
    """(h, w) map on the padded input frame -> (H, W) on the image (nearest cells, cropped)."""
    import cv2

    h, w = grid_map.shape
    H, W = shape
    scale = img_size / max(H, W)
    full = cv2.resize(grid_map.astype(np.float32), (img_size, img_size), interpolation=cv2.INTER_NEAREST)
    crop = full[: int(round(H * scale)), : int(round(W * scale))]
    return cv2.resize(crop, (W, H), interpolation=cv2.INTER_NEAREST)


def explain_sheet(result: EvalResult, models: List[str], path: Path, img_size: int = 512) -> bool:
    """Rows: (object, prompt); columns: image + prompt, then each model's attention map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(ex, p) for ex in result.examples for p in ex["prompts"] if any(
        (m, p) in ex.get("attention", {}) for m in models)]
    shown = [m for m in models if any((m, p) in ex["attention"] for ex, p in rows)]
    if not rows or not shown:
        return False
    cols = 1 + len(shown)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.8 * cols, 2.4 * len(rows)), squeeze=False)
    for r, (ex, prompt) in enumerate(rows):
        window = view_window(ex["mask"], ex["prompts"][prompt])
        ax = axes[r, 0]
        ax.imshow(ex["image"])
        ax.contour(ex["mask"], levels=[0.5], colors="lime", linewidths=0.8)
        draw_prompt(ax, ex["prompts"][prompt])
        ax.set_ylabel(f"{ex['name'][:18]}\n{prompt}", fontsize=7)
        for c, model in enumerate(shown, 1):
            ax = axes[r, c]
            entry = ex["attention"].get((model, prompt))
            ax.imshow(ex["image"], alpha=0.35)
            if entry is not None:
                maps, offsets = entry
                side = int(round(np.sqrt(maps.size)))
                grid_map = maps.reshape(side, side)
                shape = ex["mask"].shape
                ax.imshow(_upsample(grid_map / grid_map.max(), shape, img_size), cmap="magma", alpha=0.65)
                ax.contour(ex["mask"], levels=[0.5], colors="lime", linewidths=0.8)
                inside = _share_inside(grid_map, ex["mask"], img_size)
                ax.set_title(f"{short_name(model)[:22]}\nin object: {inside:.2f}" if r == 0 else
                             f"in object: {inside:.2f}", fontsize=7)
                if offsets is not None:
                    _arrows(ax, offsets, shape, img_size)
            ax.set_xlim(window[0], window[2]); ax.set_ylim(window[3], window[1])
        for ax in axes[r]:
            ax.set_xticks([]); ax.set_yticks([])
    save_figure(fig, path)
    return True


def _share_inside(grid_map: np.ndarray, mask: np.ndarray, img_size: int) -> float:
    from .attention import grid_fraction

    return float((grid_map * grid_fraction(mask, img_size, grid_map.shape)).sum())


def _arrows(ax, offsets: np.ndarray, shape: tuple, img_size: int, per_side: int = 12) -> None:
    """Δp (h, w, 2) in grid cells, drawn from each cell centre in image pixels."""
    h, w = offsets.shape[:2]
    cell = img_size / h / (img_size / max(shape))  # image pixels per grid cell
    step = max(1, h // per_side)
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    cx, cy = (xs + 0.5) * cell, (ys + 0.5) * cell
    inside = (cx < shape[1]) & (cy < shape[0])
    d = offsets[ys, xs]
    ax.quiver(cx[inside], cy[inside], d[..., 0][inside] * cell, d[..., 1][inside] * cell, color="cyan",
              angles="xy", scale_units="xy", scale=1, width=0.006)
