#!/usr/bin/env python
"""One table per dataset from `stablesam eval --protocol prompts,clicks` runs: the click protocol
(NoC@85/90, mIoU after 1, 2, 5, 10 and 20 clicks) beside gt-box / points@1 / points@3 mIoU, the
models of every run side by side, each named by --label.

    python scripts/click_table.py runs/eval28/old runs/eval28/new --label sam:old.pt=base
"""

import argparse
import json
from pathlib import Path

KS = (1, 2, 5, 10, 20)
PROMPTS = ("gt-box", "points@1", "points@3")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--label", action="append", default=[], metavar="MODEL=NAME")
    args = p.parse_args()
    labels = dict(x.rsplit("=", 1) for x in args.label)
    rows = {}
    for run in args.runs:
        result = json.loads((run / "results.json").read_text())
        for r in result.get("clicks", {}).get("rows", []):
            rows.setdefault((r["dataset"], r["model"]), {}).update(
                {"NoC@85": r["NoC@85"], "NoC@90": r["NoC@90"], **{f"@{k}": r["mIoU@k"][k - 1] for k in KS}})
        for r in result["rows"]:
            if r["prompt"] in PROMPTS:
                rows.setdefault((r["dataset"], r["model"]), {})[r["prompt"]] = r["mIoU"]
    head = ["dataset", "model", "NoC@85", "NoC@90"] + [f"mIoU@{k}" for k in KS] + list(PROMPTS)
    keys = ["NoC@85", "NoC@90"] + [f"@{k}" for k in KS] + list(PROMPTS)
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for (ds, model), v in rows.items():
        cells = [f"{v[k]:.2f}" if k.startswith("NoC") else f"{v[k]:.3f}" if k in v else "—" for k in keys]
        print(f"| {ds} | {labels.get(model, model)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
