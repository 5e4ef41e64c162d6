"""Automatic masks ("segment everything") with the embedded model: how long a user waits, and
how many of a scene's objects they get.

    python benchmarks/automatic_masks.py speed [--rounds 3]
        `stablesam segment coffee.jpg --everything` end to end (process start to folder written)
        with the device's default grid, beside `python -c "import torch"` (the floor), median of
        --rounds, rounds alternating; the machine's load average is printed with them.
    python benchmarks/automatic_masks.py recall [--per-set 20] [--grid 8,10,12]
        recall = the share of ground-truth objects that some automatic mask matches with IoU >= 0.5
        (ignore pixels left out), per set, on images of splits/val.txt (round-robin over the sets'
        lists, the first --per-set of each), for: Stable-SAM with the embedded model's defaults
        (stablesam's generator) and SAM's generator with its default thresholds (0.88 / 0.95) on
        the same weights (plugins off; `StableSamAutomaticMaskGenerator` with the plugins off
        computes exactly what `SamAutomaticMaskGenerator` does, tests/test_automatic.py). Both
        share one encoder run per image.
    python benchmarks/automatic_masks.py calibrate [--split splits/train.txt] [--per-set 6]
        recall and masks per image over a grid of (pred_iou_thresh, stability_score_thresh) on
        training images: the decoder runs once per image, each setting reuses its outputs.

Needs ../shared/data (the development sets) for recall and calibrate.
"""

import argparse
import itertools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "src" / "stablesam" / "examples" / "coffee.jpg"
DATA = REPO.parent / "shared" / "data"
SAM_DEFAULTS = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}  # SamAutomaticMaskGenerator's


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def seconds(command: List[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - t


def speed(args: argparse.Namespace) -> Dict:
    floor, everything = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            floor.append(seconds([sys.executable, "-c", "import torch"], Path(tmp)))
            everything.append(seconds([sys.executable, "-m", "stablesam", "segment", str(PHOTO), "--everything",
                                       "--out", f"masks{r}"], Path(tmp)))
        summary = json.loads((Path(tmp) / "masks0" / "masks.json").read_text())
    result = {"import_torch_s": statistics.median(floor), "everything_s": statistics.median(everything),
              "masks": summary["count"], "settings": summary["settings"], "rounds": args.rounds, "load": load()}
    print(f"median of {args.rounds} ({result['load']}): python -c 'import torch' {result['import_torch_s']:.2f} s; "
          f"segment coffee.jpg --everything {result['everything_s']:.2f} s "
          f"({result['masks']} masks, grid {summary['settings']['points_per_side']}, "
          f"ratio to the floor {result['everything_s'] / result['import_torch_s']:.1f})")
    return result


def samples(split: Path, per_set: int):
    """The first `per_set` objects of each set in `split`, round-robin over the sets."""
    from stablesam.data.datasets import load_split
    from stablesam.data.layouts import open_dataset

    lists = load_split(split)
    datasets = [open_dataset(DATA / name, stems=sorted(stems)) for name, stems in sorted(lists.items())]
    for i in range(per_set):
        for d in datasets:
            if i < len(d):
                sample = d.load(i)
                if sample is not None:
                    yield sample


def best_ious(records, sample) -> float:
    from stablesam.evaluation.metrics import mask_iou

    return max((mask_iou(r["segmentation"], sample.mask, sample.ignore) for r in records), default=0.0)


def table(rows: Dict[str, Dict[str, List[float]]], counts: Dict[str, List[int]]) -> List[str]:
    sets = sorted({s for r in rows.values() for s in r})
    lines = ["| generator | " + " | ".join(sets) + " | all | masks / image |", "|---" * (len(sets) + 3) + "|"]
    for name, per_set in rows.items():
        cells = [f"{sum(v >= 0.5 for v in per_set[s]) / len(per_set[s]):.2f}" for s in sets]
        every = [v for s in sets for v in per_set[s]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | **{sum(v >= 0.5 for v in every) / len(every):.2f}** "
                     f"| {statistics.mean(counts[name]):.1f} |")
    return lines


def recall(args: argparse.Namespace) -> Dict:
    import torch

    from stablesam import StableSamAutomaticMaskGenerator, load_model
    from stablesam.backends.automatic import automatic_defaults
    from stablesam.models.cache import EmbeddingCache

    model = load_model().eval()
    cache = EmbeddingCache(None, memory_items=2)
    ours = automatic_defaults(model)
    results = {}
    for grid in [int(g) for g in args.grid.split(",")]:
        setups = {f"Stable-SAM, stablesam's thresholds {ours['pred_iou_thresh']:g} / {ours['stability_score_thresh']:g}":
                  (True, ours), f"SAM's generator, its thresholds 0.88 / 0.95 (plugins off)": (False, SAM_DEFAULTS)}
        rows = {name: {} for name in setups}
        counts = {name: [] for name in setups}
        seconds_per = {name: 0.0 for name in setups}
        start, n = time.time(), 0
        for sample in samples(args.split, args.per_set):
            n += 1
            for name, (plugins, thresholds) in setups.items():
                model.plugins_enabled = plugins
                gen = StableSamAutomaticMaskGenerator(model, points_per_side=grid, points_per_batch=16,
                                                      embedding_cache=cache, **thresholds)
                t = time.time()
                with torch.no_grad():
                    records = gen.generate(sample.image)
                seconds_per[name] += time.time() - t
                rows[name].setdefault(sample.dataset, []).append(best_ious(records, sample))
                counts[name].append(len(records))
            print(f"[grid {grid}, {n}] {sample.dataset}/{sample.name}: "
                  + ", ".join(f"{rows[k][sample.dataset][-1]:.2f} ({counts[k][-1]})" for k in setups)
                  + f"  {time.time() - start:.0f} s", flush=True)
        lines = [f"grid {grid} x {grid}, {n} validation images ({args.per_set} per set), decoder seconds per image: "
                 + ", ".join(f"{k.split(',')[0]} {v / n:.1f}" for k, v in seconds_per.items()), "",
                 *table(rows, counts)]
        print("\n".join(lines), flush=True)
        results[grid] = {"rows": rows, "counts": counts, "seconds": seconds_per, "images": n, "markdown": lines}
    model.plugins_enabled = True
    return {"grids": results, "load": load()}


def calibrate(args: argparse.Namespace) -> Dict:
    import torch

    from stablesam import StableSamAutomaticMaskGenerator, load_model
    from stablesam.models.cache import EmbeddingCache

    ious = [float(v) for v in args.pred_iou.split(",")]
    stabs = [float(v) for v in args.stability.split(",")]
    model = load_model().eval()
    cache = EmbeddingCache(None, memory_items=2)
    grid_results = {(i, s): {"best": [], "count": []} for i, s in itertools.product(ious, stabs)}
    for n, sample in enumerate(samples(args.split, args.per_set), 1):
        memo: Dict[bytes, tuple] = {}
        gen = StableSamAutomaticMaskGenerator(model, points_per_side=args.grid_size, points_per_batch=16,
                                              embedding_cache=cache)
        decode = gen.predictor.predict_torch

        def once(points, *a, **k):  # the decoder runs once per batch of clicks, whatever the thresholds
            key = points.cpu().numpy().tobytes()
            if key not in memo:
                gen.predictor.upscale_above = min(ious)
                memo[key] = decode(points, *a, **k)
            return memo[key]

        gen.predictor.predict_torch = once
        for (i, s), r in grid_results.items():
            gen.pred_iou_thresh, gen.stability_score_thresh = i, s
            with torch.no_grad():
                records = gen.generate(sample.image)
            r["best"].append(best_ious(records, sample))
            r["count"].append(len(records))
        print(f"[{n}] {sample.dataset}/{sample.name}", flush=True)
    lines = [f"{n} images of {args.split.name} ({args.per_set} per set), grid {args.grid_size} x {args.grid_size}", "",
             "| pred_iou_thresh | stability_score_thresh | recall @ 0.5 | mean best IoU | masks / image |",
             "|---|---|---|---|---|"]
    for (i, s), r in grid_results.items():
        lines.append(f"| {i:g} | {s:g} | {sum(b >= 0.5 for b in r['best']) / n:.2f} | "
                     f"{statistics.mean(r['best']):.3f} | {statistics.mean(r['count']):.1f} |")
    print("\n".join(lines))
    return {"markdown": lines, "load": load()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--rounds", type=int, default=3)
    rc = sub.add_parser("recall")
    rc.add_argument("--split", type=Path, default=REPO / "splits" / "val.txt")
    rc.add_argument("--per-set", type=int, default=20)
    rc.add_argument("--grid", default="10", help="comma-separated grid sizes")
    cb = sub.add_parser("calibrate")
    cb.add_argument("--split", type=Path, default=REPO / "splits" / "train.txt")
    cb.add_argument("--per-set", type=int, default=6)
    cb.add_argument("--grid-size", type=int, default=10)
    cb.add_argument("--pred-iou", default="0.1,0.2,0.3,0.4,0.5")
    cb.add_argument("--stability", default="0.3,0.5,0.7,0.8")
    for q in (rc, cb, sp):
        q.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    result = {"speed": speed, "recall": recall, "calibrate": calibrate}[args.what](args)
    result["command"] = "python benchmarks/automatic_masks.py " + shlex.join(argv or sys.argv[1:])
    print(f"({result.get('load') or load()})")
    if args.out:
        from stablesam.fileio import write_text

        write_text(args.out, json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
