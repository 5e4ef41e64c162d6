#!/usr/bin/env python
"""What the plugins do to automatic ("segment everything") masks, on the validation split.

SAM = the embedded model with its plugins off, Stable-SAM = the same weights with them on
(`--model`, default tiny-stable-sam); both through `StableSamAutomaticMaskGenerator` with the
same settings, one encoder run per image (shared embedding cache). Per model:

- best IoU: for each ground-truth object, the best IoU among the image's generated masks (ignore
  pixels excluded); its mean over objects and the share of objects found at IoU >= 0.5 / 0.75;
- masks per image;
- grid-shift stability: the image is run again with the point grid moved by half a cell along
  x and y (points on the cells' corners k/n instead of their centres (k + 0.5)/n); each mask of
  either run is matched to its best-IoU mask of the other run, and the mean of these best-match
  IoUs is taken per image (images where neither run gives a mask are left out), then averaged.

Images are taken round-robin over the split's datasets, so a small --limit covers all of them.

    OMP_NUM_THREADS=1 python scripts/automatic_masks_study.py --limit 20 --out runs/automatic_study
"""

import argparse
import json
import shlex
import sys
import time
from itertools import zip_longest
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from segment_anything.utils.amg import build_point_grid

from stablesam.backends.automatic import StableSamAutomaticMaskGenerator
from stablesam.models.cache import EmbeddingCache
from stablesam.data.datasets import load_split
from stablesam.models.embedded import AUTOMATIC_DEFAULTS
from stablesam.data.layouts import open_dataset
from stablesam.evaluation.metrics import mask_iou
from stablesam.models.spec import build_model, parse_model_spec
from stablesam.backends.predictor import CPU_MAX_BATCH
from stablesam.fileio import write_text

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"SAM": False, "Stable-SAM": True}  # name -> plugins_enabled


def shifted_grid(n: int) -> np.ndarray:
    """SAM's n x n grid (cell centres) moved by half a cell: the cells' corners k/n, (n*n, 2)."""
    return build_point_grid(n) - 0.5 / n


def pairwise_iou(a: List[np.ndarray], b: List[np.ndarray]) -> np.ndarray:
    """(len(a), len(b)) IoUs of two lists of (H, W) bool masks."""
    fa = np.stack(a).reshape(len(a), -1).astype(np.float32)
    fb = np.stack(b).reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1)


def shift_stability(a: List[np.ndarray], b: List[np.ndarray]):
    """Mean best-match IoU between the masks of two runs (both directions); None if both empty."""
    if not a and not b:
        return None
    if not a or not b:
        return 0.0
    iou = pairwise_iou(a, b)
    return float(np.concatenate([iou.max(1), iou.max(0)]).mean())


def validation_samples(data: Path, split_file: Path, limit: int):
    """The split's objects, round-robin over its datasets, first `limit`."""
    split = load_split(split_file)
    datasets = [open_dataset(data / name, stems=sorted(stems)) for name, stems in sorted(split.items())]
    rows = zip_longest(*[[(d, i) for i in range(len(d))] for d in datasets])
    refs = [ref for row in rows for ref in row if ref is not None]
    for d, i in refs[:limit]:
        sample = d.load(i)
        if sample is not None:
            yield sample


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--split", type=Path, default=ROOT / "splits" / "val.txt")
    p.add_argument("--limit", type=int, default=None, help="first N images (round-robin over datasets)")
    p.add_argument("--model", default="tiny-stable-sam", help="a SPEC with a plugin (plugins off = SAM)")
    p.add_argument("--points-per-side", type=int, default=16)
    p.add_argument("--pred-iou-thresh", type=float, default=AUTOMATIC_DEFAULTS["pred_iou_thresh"])
    p.add_argument("--stability-thresh", type=float, default=AUTOMATIC_DEFAULTS["stability_score_thresh"])
    p.add_argument("--out", type=Path, default=None, help="folder for results.json / results.md")
    args = p.parse_args(argv)
    model = build_model(parse_model_spec(args.model), "cpu").eval()
    if not model.plugins_enabled:
        p.error(f"{args.model} has no plugin: the study compares plugins off and on")
    cache = EmbeddingCache(None, memory_items=2)
    n = args.points_per_side
    settings = dict(points_per_batch=CPU_MAX_BATCH, pred_iou_thresh=args.pred_iou_thresh,
                    stability_score_thresh=args.stability_thresh)
    grids = {"normal": [build_point_grid(n)], "shifted": [shifted_grid(n)]}
    rows: Dict[str, Dict[str, list]] = {m: {"best": [], "count": [], "shift": []} for m in MODELS}
    start, images = time.time(), 0
    with torch.no_grad():
        for sample in validation_samples(args.data, args.split, args.limit or 10**9):
            images += 1
            for name, plugins in MODELS.items():
                model.plugins_enabled = plugins
                runs = {}
                for grid, points in grids.items():
                    gen = StableSamAutomaticMaskGenerator(model, points_per_side=None, point_grids=points, embedding_cache=cache,
                                                          **settings)
                    runs[grid] = [r["segmentation"] for r in gen.generate(sample.image)]
                best = max((mask_iou(m, sample.mask, sample.ignore) for m in runs["normal"]), default=0.0)
                rows[name]["best"].append(best)
                rows[name]["count"].append(len(runs["normal"]))
                rows[name]["shift"].append(shift_stability(runs["normal"], runs["shifted"]))
            print(f"[{images}] {sample.dataset}/{sample.name}: best IoU "
                  + ", ".join(f"{m} {rows[m]['best'][-1]:.3f} ({rows[m]['count'][-1]} masks)" for m in MODELS)
                  + f"  {time.time() - start:.0f} s", flush=True)
    summary = {}
    for name, r in rows.items():
        best = np.array(r["best"])
        shift = [s for s in r["shift"] if s is not None]
        summary[name] = {"mean_best_iou": float(best.mean()), "found@0.5": float((best >= 0.5).mean()),
                         "found@0.75": float((best >= 0.75).mean()), "masks_per_image": float(np.mean(r["count"])),
                         "shift_stability": float(np.mean(shift)) if shift else None, "shift_images": len(shift)}
    command = "OMP_NUM_THREADS=1 python scripts/automatic_masks_study.py " + shlex.join(argv or sys.argv[1:])
    table = [f"Command: `{command}`", "",
             f"{images} images (objects) of {args.split.name}, {n} x {n} grid, predicted IoU > {args.pred_iou_thresh}, "
             f"stability >= {args.stability_thresh}, {time.time() - start:.0f} s", "",
             "| model | mean best IoU | found @ 0.5 | found @ 0.75 | masks / image | grid-shift stability |",
             "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        stab = "—" if s["shift_stability"] is None else f"{s['shift_stability']:.3f}"
        table.append(f"| {name} | {s['mean_best_iou']:.3f} | {s['found@0.5']:.0%} | {s['found@0.75']:.0%} | "
                     f"{s['masks_per_image']:.1f} | {stab} |")
    print("\n".join(table))
    if args.out:
        write_text(args.out / "results.json", json.dumps({"command": command, "images": images, "settings": {
            "points_per_side": n, **settings, "model": args.model}, "summary": summary, "per_image": rows}, indent=2))
        write_text(args.out / "results.md", "\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
