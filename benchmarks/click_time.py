"""Time per object of the click protocol (20 corrective clicks, decoder only, image encoded
once), for the embedded tiny SAM and for a ViT-B-sized SAM (random weights: same compute as
Meta's checkpoint), plugins off and on, measured side by side in one run.

    python benchmarks/click_time.py [--objects 3] [--max-clicks 20] [--threads 1]
"""

import argparse
import time

import numpy as np
import torch
from segment_anything import sam_model_registry

from stablesam import StableSam, StableSamPredictor, load_model
from stablesam.evaluation.clicks import run_clicks


def objects(n: int, rng: np.random.Generator):
    """n (image, mask) pairs: 640 x 480 noise with an ellipse whose colour differs a little."""
    yy, xx = np.mgrid[:480, :640]
    for _ in range(n):
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        cx, cy, a, b = rng.uniform(200, 440), rng.uniform(150, 330), rng.uniform(60, 180), rng.uniform(40, 130)
        mask = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
        image[mask] = (image[mask] * 0.6 + 80).astype(np.uint8)
        yield image, mask


def per_object(model: StableSam, plugins: bool, pairs, max_clicks: int) -> float:
    predictor = StableSamPredictor(model)
    model.plugins_enabled = plugins
    times = []
    for image, mask in pairs:
        predictor.set_image(image)
        t = time.perf_counter()
        run_clicks(predictor, mask, None, max_clicks)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pairs = list(objects(args.objects, np.random.default_rng(0)))
    tiny = load_model(device="cpu")  # the embedded tiny SAM with its plugin
    vit_b = StableSam(sam_model_registry["vit_b"]())
    print(f"{args.max_clicks} clicks per object, decoder only, median of {args.objects} objects, "
          f"{args.threads} thread(s):")
    for name, model in (("embedded tiny SAM", tiny), ("ViT-B-sized SAM", vit_b)):
        grid = model.sam.prompt_encoder.image_embedding_size
        off = per_object(model, False, pairs, args.max_clicks)
        on = per_object(model, True, pairs, args.max_clicks)
        print(f"  {name} ({grid[0]}x{grid[1]} grid): SAM {off:.2f} s / object, Stable-SAM {on:.2f} s / object "
              f"({on / off:.2f}x)")


if __name__ == "__main__":
    main()
