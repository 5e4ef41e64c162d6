#!/usr/bin/env python
"""Where do the masks of two or more models differ: do they grow into the surroundings, or shrink?

    python scripts/mask_spill.py --data ../shared/data/coco_mval --split splits/val.txt --limit 40 \\
        --model tiny-sam --model tiny-sam+plugin=PLUGIN.pt --prompts gt-box,noisy-box@0.4,points@1 --samples 5

For each model and prompt type, over the objects' K prompts (the benchmark's prompts: same seed,
same prompts for every model), the mean of:
  IoU; recall (share of the object covered); precision (share of the mask on the object);
  area (mask area / object area);
  spill (mask pixels outside the object's box, in units of the object's area): the mask
  reaching past the object's extent, into neighbours or background;
  inner FP (mask pixels inside the object's box but off the object, same units).
Ignore pixels (e.g. Oxford-IIIT Pet's trimap band) count nowhere. Prints a markdown table.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from stablesam.commands.common import add_data_options, open_datasets  # noqa: E402
from stablesam.models.cache import EmbeddingCache, default_cache_dir  # noqa: E402
from stablesam.models.spec import build_segmenter, parse_model_spec  # noqa: E402
from stablesam.prompts.generation import generate, mask_to_box, object_rng, parse_prompts  # noqa: E402

COLUMNS = ("IoU", "recall", "precision", "area", "spill", "inner FP")


def mask_stats(pred: np.ndarray, gt: np.ndarray, ignore) -> np.ndarray:
    """(len(COLUMNS),) for one predicted (H, W) mask against the object's (H, W) mask."""
    keep = np.ones_like(gt) if ignore is None else ~ignore
    pred, obj = pred & keep, gt & keep
    x0, y0, x1, y1 = mask_to_box(gt).astype(int)
    in_box = np.zeros_like(gt)
    in_box[y0:y1 + 1, x0:x1 + 1] = True
    area, hit = max(int(obj.sum()), 1), int((pred & obj).sum())
    union = int((pred | obj).sum())
    return np.array([hit / max(union, 1), hit / area, hit / max(int(pred.sum()), 1), pred.sum() / area,
                     (pred & ~in_box).sum() / area, (pred & in_box & ~obj).sum() / area])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_options(p)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N objects of each dataset")
    p.add_argument("--model", action="append", required=True, metavar="SPEC")
    p.add_argument("--prompts", default="gt-box,noisy-box@0.4,points@1")
    p.add_argument("--samples", type=int, default=5, metavar="K")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    datasets = open_datasets(args)
    cache = EmbeddingCache(default_cache_dir())
    segmenters = [build_segmenter(parse_model_spec(m), cache, device=args.device) for m in args.model]
    prompts = parse_prompts(args.prompts)
    sums = {(m, pt.name): [] for m in args.model for pt in prompts}
    for ds in datasets:
        for i in range(min(len(ds), args.limit or len(ds))):
            sample = ds.load(i)
            if sample is None:
                continue
            for seg in segmenters:
                seg.set_image(sample.image)
            for pt in prompts:
                batch = generate(pt, sample.mask, args.samples, object_rng(args.seed, ds.name, sample.name, pt.name))
                if len(batch) == 0:
                    continue
                for spec, seg in zip(args.model, segmenters):
                    masks = seg.predict(batch)
                    sums[(spec, pt.name)].append(np.mean([mask_stats(m, sample.mask, sample.ignore) for m in masks], 0))
    print("| prompt | model | objects | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for pt in prompts:
        for spec in args.model:
            rows = sums[(spec, pt.name)]
            cells = " | ".join(f"{v:.3f}" for v in np.mean(rows, 0)) if rows else " | ".join("—" * len(COLUMNS))
            print(f"| {pt.name} | {spec} | {len(rows)} | {cells} |")


if __name__ == "__main__":
    main()
