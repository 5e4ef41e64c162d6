#!/usr/bin/env python
"""Merge the per-object scores of several `stablesam eval` runs into one markdown table per
metric: mean over all objects (every dataset pooled), models side by side.

    python scripts/summarize_results.py runs/results/eval_coco runs/results/eval_davis_horse \\
        runs/results/eval_grabcut --label tiny-stable-sam=Stable-SAM --label grabcut@512=GrabCut
"""

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

METRICS = (("iou", "mIoU"), ("biou", "mBIoU"), ("stability", "stability (mean pairwise IoU of the K masks)"))


def read_runs(folders):
    """(model, prompt) -> {metric: [per-object values]}, the prompt order and the model order.
    A model evaluated in two runs on the same object and prompt counts once (the scores are the
    same: prompts depend only on the seed, dataset, object and prompt type)."""
    scores = defaultdict(lambda: defaultdict(list))
    prompts, models, seen = [], [], set()
    for folder in folders:
        path = Path(folder) / "per_object.csv"
        if not path.is_file():
            sys.exit(f"{path}: not found (is {folder} a `stablesam eval` output folder?)")
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                model, prompt = row["model"], row["prompt"]
                if (model, row["dataset"], row["object"], prompt) in seen:
                    continue
                seen.add((model, row["dataset"], row["object"], prompt))
                models += [model] if model not in models else []
                prompts += [prompt] if prompt not in prompts else []
                for key, _ in METRICS:
                    if row.get(key) not in (None, ""):
                        scores[(model, prompt)][key].append(float(row[key]))
    return scores, prompts, models


def table(scores, prompts, models, labels, key, title) -> str:
    head = [labels.get(m, m) for m in models]
    lines = [f"**{title}**", "", "| prompt | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for prompt in prompts:
        cells = []
        for m in models:
            values = scores.get((m, prompt), {}).get(key)
            cells.append(f"{np.mean(values):.3f}" if values else "—")
        lines.append(f"| {prompt} | " + " | ".join(cells) + " |")
    counts = {len(scores[(m, p)]["iou"]) for m in models for p in prompts if scores.get((m, p), {}).get("iou")}
    lines += ["", f"objects per cell: {', '.join(map(str, sorted(counts)))}", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="`stablesam eval --out` folders")
    p.add_argument("--label", action="append", default=[], metavar="MODEL=LABEL", help="column name for a model")
    args = p.parse_args(argv)
    labels = dict(item.rsplit("=", 1) for item in args.label)  # model names may hold "=" themselves
    scores, prompts, models = read_runs(args.runs)
    print("\n".join(table(scores, prompts, models, labels, key, title) for key, title in METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
