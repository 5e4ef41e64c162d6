#!/usr/bin/env python
"""Pool the per-object scores of several `stablesam eval` runs into one set of tables (every
dataset pooled, models side by side), with `stablesam eval`'s own aggregation and tables.

    python scripts/summarize_results.py runs/results/eval_coco runs/results/eval_davis_horse \\
        runs/results/eval_grabcut --label tiny-stable-sam=Stable-SAM --label grabcut@512=GrabCut
"""

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from stablesam.evaluation.prompt_eval import OPTIONAL_SCORES, EvalResult, aggregate  # noqa: E402
from stablesam.evaluation.reports import markdown_tables  # noqa: E402

POOLED = "all datasets"


def read_objects(folders, labels):
    """Per-object records of all runs, dataset pooled, models renamed by `labels`. A model
    evaluated in two runs on the same object and prompt counts once (the scores are the same:
    prompts depend only on the seed, dataset, object and prompt type)."""
    objects, seen = [], set()
    for folder in folders:
        path = Path(folder) / "per_object.csv"
        if not path.is_file():
            sys.exit(f"{path}: not found (is {folder} a `stablesam eval` output folder?)")
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                key = (row["model"], row["dataset"], row["object"], row["prompt"])
                if key in seen:
                    continue
                seen.add(key)
                objects.append({"model": labels.get(row["model"], row["model"]), "dataset": POOLED,
                                "object": f"{row['dataset']}/{row['object']}", "prompt": row["prompt"],
                                "iou": float(row["iou"]), "biou": float(row["biou"]),
                                "stability": float(row["stability"]) if row["stability"] else None,
                                **{key: float(row[key]) if row.get(key) else None for key in OPTIONAL_SCORES}})
    return objects


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="`stablesam eval --out` folders")
    p.add_argument("--label", action="append", default=[], metavar="MODEL=LABEL", help="column name for a model")
    args = p.parse_args(argv)
    labels = dict(item.rsplit("=", 1) for item in args.label)  # model names may hold "=" themselves
    objects = read_objects(args.runs, labels)
    models = list(dict.fromkeys(o["model"] for o in objects))
    prompts = list(dict.fromkeys(o["prompt"] for o in objects))
    print(markdown_tables(EvalResult(rows=aggregate(objects, models, [POOLED], prompts)), models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
