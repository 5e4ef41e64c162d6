#!/usr/bin/env python
"""How close does an output selector get to the per-object oracle (the better of plain SAM and
Stable-SAM for each object)? Reads the per_object.csv of `stablesam eval` runs on the same
objects and prompts:

    python scripts/selector_oracle.py --base runs/lodo/coco_mval/base/eval \\
        --plugin runs/lodo/coco_mval/strong1/eval --selector runs/lodo/coco_mval/strong1_ioubox/eval ...

Prints, per prompt type, the mIoU of the base, the plugin, each selector and the oracle, and the
share of the oracle's gain over the plugin alone that each selector reaches.
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path
from typing import Dict, Tuple


def per_object(folder: str) -> Dict[Tuple[str, str], float]:
    """{(object, prompt): mean IoU} of the one model of an eval folder."""
    with open(Path(folder) / "per_object.csv", newline="") as f:
        return {(r["dataset"] + "/" + r["object"], r["prompt"]): float(r["iou"]) for r in csv.DictReader(f)
                if r["protocol"] == "prompts"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, metavar="EVAL_DIR")
    p.add_argument("--plugin", required=True, metavar="EVAL_DIR")
    p.add_argument("--selector", action="append", default=[], metavar="EVAL_DIR")
    args = p.parse_args()
    base, plugin = per_object(args.base), per_object(args.plugin)
    selectors = {Path(s).parent.name: per_object(s) for s in args.selector}
    if set(base) != set(plugin) or any(set(s) != set(base) for s in selectors.values()):
        p.error("the evaluations do not hold the same objects and prompt types")
    prompts = list(dict.fromkeys(prompt for _, prompt in base))
    header = ["prompt", "base", "plugin", *selectors, "oracle", *(f"{n}: share of oracle gain" for n in selectors)]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for prompt in prompts:
        keys = [k for k in base if k[1] == prompt]
        mean = defaultdict(float)
        for k in keys:
            mean["base"] += base[k] / len(keys)
            mean["plugin"] += plugin[k] / len(keys)
            mean["oracle"] += max(base[k], plugin[k]) / len(keys)
            for name, s in selectors.items():
                mean[name] += s[k] / len(keys)
        room = mean["oracle"] - mean["plugin"]
        shares = [f"{(mean[n] - mean['plugin']) / room:+.0%}" if room > 1e-9 else "—" for n in selectors]
        print(f"| {prompt} | " + " | ".join(f"{mean[c]:.3f}" for c in ["base", "plugin", *selectors, "oracle"])
              + " | " + " | ".join(shares) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
