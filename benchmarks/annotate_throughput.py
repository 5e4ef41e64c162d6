"""`stablesam annotate` throughput and memory, measured side by side in one run:

1. objects/s of `--workers 2` against `--workers 1` (target >= 1.7x on 2 cores), and of
   `--engine ray --workers 2` against `--workers 2` (target: within 15 %); each a whole command
   in its own process (model loading and process start-up included);
2. objects/s of annotate's per-image work (batched decoder calls, RLE) against a plain Python loop
   over `StableSamPredictor.predict`, one box at a time, with the same model and boxes (target >= 1.0);
3. peak memory (max RSS) of a whole command for 2,000 images against 200 (target <= 1.2x), with a
   small random-weight SAM so that 2,000 images take a minute.

Images: /work/shared/data/coco_mval's (or ../shared/data beside the checkout) when present, else
synthetic ones; 4 seeded random boxes per image. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/annotate_throughput.py [--images 24] [--no-ray]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "coco_mval" / "images"
sys.path.insert(0, str(ROOT / "tests"))


def make_images(folder: Path, n: int, real: bool, size=(96, 128)) -> list:
    """n images in `folder` (copies of real photos, or synthetic) -> COCO image entries."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sources = sorted(SHARED.glob("*.jpg"))[:n] if real and SHARED.is_dir() else []
    entries = []
    for i in range(n):
        name = f"im{i:05d}.jpg"
        if sources:
            shutil.copy(sources[i % len(sources)], folder / name)
            w, h = Image.open(folder / name).size
        else:
            h, w = size
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
        entries.append({"id": i + 1, "file_name": name, "width": w, "height": h})
    return entries


def make_coco(path: Path, images: list, boxes_per_image: int = 4) -> None:
    rng = np.random.default_rng(1)
    anns = []
    for im in images:
        w, h = im["width"], im["height"]
        for _ in range(boxes_per_image):
            bw, bh = rng.uniform(0.2, 0.6) * w, rng.uniform(0.2, 0.6) * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": 1,
                         "bbox": [round(x, 1), round(y, 1), round(bw, 1), round(bh, 1)]})
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "o"}]}))


def run_command(args: list) -> tuple:
    """The command in its own process: (wall seconds, peak RSS in MB of that process)."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "stablesam", "annotate", *map(str, args)],
                         env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, args))}\n{out.stderr[-2000:]}")
    return seconds, int(out.stdout.strip().splitlines()[-1]) / 1024


def engines(tmp: Path, n: int, ray: bool) -> None:
    images = make_images(tmp / "images", n, real=True)
    make_coco(tmp / "coco.json", images)
    objects = 4 * n
    common = ["--images", tmp / "images", "--boxes", tmp / "coco.json"]
    rates = {}
    runs = [("workers 1", ["--workers", "1"]), ("workers 2", ["--workers", "2"])]
    if ray:
        runs.append(("ray, 2 actors", ["--engine", "ray", "--workers", "2"]))
    for name, extra in runs:
        seconds, _ = run_command([*common, "--out", tmp / f"{name.replace(' ', '_')}.json", *extra])
        rates[name] = objects / seconds
        print(f"{name:>14}: {objects} objects in {seconds:.1f} s = {rates[name]:.2f} objects/s (whole command)")
    print(f"workers 2 / workers 1: {rates['workers 2'] / rates['workers 1']:.2f}x (target >= 1.7)")
    if ray:
        print(f"ray / workers 2: {rates['ray, 2 actors'] / rates['workers 2']:.2f}x (target >= 0.85)")


def against_plain_loop(tmp: Path, n: int) -> None:
    from stablesam import load_image
    from stablesam.annotate.inputs import read_job
    from stablesam.annotate.worker import Annotator

    images = make_images(tmp / "loop_images", n, real=True)
    make_coco(tmp / "loop.json", images)
    tasks = [t.to_dict() for t in read_job(tmp / "loop.json", tmp / "loop_images").tasks]
    annotator = Annotator("tiny-stable-sam", "cpu")
    predictor = annotator.predictor
    objects = sum(len(t["boxes"]) for t in tasks)
    start = time.monotonic()
    for task in tasks:  # the plain loop: one predict call per box
        predictor.set_image(load_image(task["path"], exif=False))
        for box in task["boxes"]:
            x, y, w, h = box["bbox"]
            predictor.predict(box=np.array([x, y, x + w, y + h]), multimask_output=False)
    loop = objects / (time.monotonic() - start)
    start = time.monotonic()
    for task in tasks:
        annotator.annotate(task)
    ours = objects / (time.monotonic() - start)
    print(f"plain predict loop: {loop:.2f} objects/s; annotate's per-image work: {ours:.2f} objects/s; "
          f"ratio {ours / loop:.2f}x (target >= 1.0)")


def memory(tmp: Path, small: int, large: int) -> None:
    from conftest import SMALL_ARCH, build_small_sam
    from stablesam import StableSam, save_plugin
    from stablesam.models.files import save_sam_file

    model = StableSam(build_small_sam())
    save_sam_file(model.sam, SMALL_ARCH, tmp / "sam.pt")
    save_plugin(model, tmp / "plugin.pt", base_name="sam:sam.pt")
    spec = f"sam:{tmp / 'sam.pt'}+plugin={tmp / 'plugin.pt'}"
    images = make_images(tmp / "mem_images", large, real=False)
    peaks = {}
    for n in (small, large):
        make_coco(tmp / f"mem{n}.json", images[:n])
        seconds, peaks[n] = run_command(["--images", tmp / "mem_images", "--boxes", tmp / f"mem{n}.json",
                                         "--out", tmp / f"mem{n}_out.json", "--model", spec, "--device", "cpu"])
        print(f"{n:>5} images ({4 * n} objects): peak RSS {peaks[n]:.0f} MB, {seconds:.1f} s")
    print(f"peak memory {large} / {small} images: {peaks[large] / peaks[small]:.3f}x (target <= 1.2)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=24, help="images for the engine and loop comparisons")
    p.add_argument("--memory-images", type=int, nargs=2, default=[200, 2000])
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--only", choices=["engines", "loop", "memory"], default=None)
    args = p.parse_args()
    print(f"cpus: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; images: "
          f"{'coco_mval' if SHARED.is_dir() else 'synthetic'}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "loop"):
            against_plain_loop(tmp, args.images)
        if args.only in (None, "engines"):
            engines(tmp, args.images, not args.no_ray)
        if args.only in (None, "memory"):
            memory(tmp, *args.memory_images)


if __name__ == "__main__":
    main()
