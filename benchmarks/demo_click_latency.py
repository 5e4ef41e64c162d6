"""The demo's latency per new click, side by side in one run: corrective decoding (each click
decoded with the previous mask as mask_input, earlier stages cached: what the demo does) against
decoding all clicks at once without a mask (what it did before), both models per request.

    python benchmarks/demo_click_latency.py [--clicks 10] [--rounds 5] [--threads 1] [--model SPEC]

Prints the median milliseconds per click of each and their ratio (corrective / stateless).
"""

import argparse
import time

import numpy as np
import torch

from stablesam.demo.engine import DemoEngine, Prompt
from stablesam.models.embedded import EXAMPLES_DIR
from stablesam.models.spec import DEFAULT_SPEC, build_model, parse_model_spec


def click_sequence(n: int, rng: np.random.Generator, width: int, height: int):
    points = np.stack([rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)], axis=1).round()
    labels = (rng.random(n) < 0.6).astype(np.int64)
    return points, labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clicks", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default=DEFAULT_SPEC)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    engine = DemoEngine(build_model(parse_model_spec(args.model), "cpu"))
    item, _ = engine.add_image((EXAMPLES_DIR / "coffee.jpg").read_bytes(), "coffee.jpg", 10_000_000, 25_000_000)
    box = np.array([170.0, 15.0, 410.0, 305.0])
    corrective, stateless = [], []
    for r in range(args.rounds):
        points, labels = click_sequence(args.clicks, np.random.default_rng(r), item.width, item.height)
        engine.stages.clear()
        engine.predict(item, Prompt(box, points[:0], labels[:0]))  # the box, before the first click
        for k in range(1, args.clicks + 1):  # alternate, so both see the same machine load
            prompt = Prompt(box, points[:k], labels[:k])
            t = time.perf_counter()
            engine.predict(item, prompt)
            corrective.append(time.perf_counter() - t)
            t = time.perf_counter()
            engine._both(item.embedding, *prompt.batch())
            stateless.append(time.perf_counter() - t)
    a, b = 1000 * np.median(corrective), 1000 * np.median(stateless)
    print(f"{args.model}: per click (both models) corrective {a:.1f} ms, stateless {b:.1f} ms, ratio {a / b:.3f}")


if __name__ == "__main__":
    main()
