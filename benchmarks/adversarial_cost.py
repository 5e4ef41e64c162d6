"""Cost per object of the worst-case box search (`adv-box@R`, a budget of decoder passes) against
the random benchmark (`noisy-box@R`, K prompts), on the same objects, side by side in one run:
decoder passes and seconds per object (decoder, masks and scores; the image embedding comes
from the cache and is not timed), and their ratio. The search runs twice: on its own (every
candidate decoded) and as `stablesam eval --prompts gt-box,noisy-box@R,adv-box@R` runs it, after
the object's gt-box and noisy-box@R prompts, whose masks its first two rounds reuse.

    python benchmarks/adversarial_cost.py [--model tiny-sam] [--objects 10] [--scale 0.2] [--budgets 48,40,32,24] [--samples 20] [--threads 1]

Objects: the first of each validation set under ../shared/data (splits/val.txt), round-robin;
without that folder, synthetic ellipses on noise.
"""

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from stablesam.models.cache import EmbeddingCache, default_cache_dir
from stablesam.data.datasets import Sample, load_split
from stablesam.evaluation.prompt_eval import object_scores
from stablesam.data.layouts import open_dataset
from stablesam.models.spec import build_segmenter, parse_model_spec
from stablesam.prompts.generation import generate, object_rng, parse_prompt
from stablesam.evaluation.worst_case import box_batch_key, run_searched, search_starts

from click_time import objects  # benchmarks/click_time.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = ("davis345", "coco_mval", "weizmann_horse", "ecssd", "oxford_pets")


def real_objects(n: int):
    split = load_split(ROOT / "splits" / "val.txt")
    datasets = [open_dataset(DATA / name, stems=split[name]) for name in SETS if (DATA / name).is_dir()]
    loaded = 0
    for i in itertools.count():
        if all(i >= len(ds) for ds in datasets):
            return
        for ds in datasets:
            if i < len(ds) and loaded < n:
                sample = ds.load(i)
                if sample is not None:
                    loaded += 1
                    yield sample
        if loaded >= n:
            return


def synthetic_objects(n: int):
    """click_time.py's noise-and-ellipse objects, as samples."""
    for i, (image, mask) in enumerate(objects(n, np.random.default_rng(0))):
        yield Sample("synthetic", f"{i:03d}", Path("."), image, mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sam", help="a model SPEC (default tiny-sam)")
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.2, help="R of adv-box@R and noisy-box@R")
    parser.add_argument("--budgets", default="48,40,32,24", help="decoder passes of the search (the first is the headline)")
    parser.add_argument("--samples", type=int, default=20, help="K random noisy boxes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    seg = build_segmenter(parse_model_spec(args.model), EmbeddingCache(default_cache_dir()), "cpu")
    noisy, adv, gt = parse_prompt(f"noisy-box@{args.scale}"), parse_prompt(f"adv-box@{args.scale}"), parse_prompt("gt-box")
    samples = list(real_objects(args.objects) if DATA.is_dir() else synthetic_objects(args.objects))
    runs = ["noisy"] + budgets + ["reuse"]
    times: dict = {r: [] for r in runs}
    passes: dict = {r: [] for r in runs}
    iou: dict = {r: [] for r in runs}
    for k, s in enumerate(samples):
        seg.set_image(s.image)
        noisy_prompts = generate(noisy, s.mask, args.samples, object_rng(0, s.dataset, s.name, noisy.name))
        gt_prompts = generate(gt, s.mask, 1, object_rng(0, s.dataset, s.name, gt.name))
        starts = search_starts(adv, 0, s.dataset, s.name, args.samples)
        decoded = {}  # what the benchmark's gt-box and noisy-box@R decoded (untimed here; the noisy run times it)
        for prompts in (gt_prompts, noisy_prompts):
            decoded[box_batch_key(prompts.boxes, False)] = seg.predict(prompts)
        for run in runs[k % len(runs):] + runs[: k % len(runs)]:  # rotate the order per object
            t = time.perf_counter()
            if run == "noisy":
                masks = seg.predict(noisy_prompts)
                value, used = object_scores(masks, s.mask, s.ignore)["iou"], len(masks)
            else:
                budget, known = (budgets[0], decoded) if run == "reuse" else (run, None)
                found = run_searched(seg, adv, s, budget, object_rng(0, s.dataset, s.name, adv.name),
                                     starts=starts, decoded=known)
                if found is None:
                    continue
                value, used = found[0]["iou"], found[0]["passes"]
            times[run].append(time.perf_counter() - t)
            passes[run].append(used)
            iou[run].append(value)
    base_t, base_p = np.mean(times["noisy"]), np.mean(passes["noisy"])
    print(f"{args.model}, {len(samples)} objects ({'validation split' if DATA.is_dir() else 'synthetic'}), "
          f"{args.threads} thread(s), R = {args.scale}:")
    print(f"  noisy-box@{args.scale}, K = {args.samples}: {base_p:.1f} decoder passes, {base_t:.3f} s / object "
          f"(masks, IoU, boundary IoU, stability); mean IoU {np.mean(iou['noisy']):.3f}")
    for b in budgets:
        print(f"  adv-box@{args.scale}, budget {b}: {np.mean(passes[b]):.1f} decoder passes, {np.mean(times[b]):.3f} s / "
              f"object (search, boundary IoU of the worst); IoU-Min {np.mean(iou[b]):.3f}; ratio adv / noisy "
              f"{np.mean(passes[b]) / base_p:.2f}x passes, {np.mean(times[b]) / base_t:.2f}x seconds")
    b = budgets[0]
    print(f"  adv-box@{args.scale}, budget {b}, after gt-box and noisy-box@{args.scale} (their masks reused): "
          f"{np.mean(passes['reuse']):.1f} decoder passes, {np.mean(times['reuse']):.3f} s / object; IoU-Min "
          f"{np.mean(iou['reuse']):.3f}; ratio adv / noisy {np.mean(passes['reuse']) / base_p:.2f}x passes, "
          f"{np.mean(times['reuse']) / base_t:.2f}x seconds")


if __name__ == "__main__":
    main()
