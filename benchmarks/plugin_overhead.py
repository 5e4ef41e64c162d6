"""Decoder cost of the plugins: Stable-SAM / SAM time for 20 box prompts on a ViT-B-sized
64x64x256 image embedding, measured side by side (alternating), median of the ratios.

    python benchmarks/plugin_overhead.py [--prompts 20] [--rounds 15] [--threads N]
"""

import argparse
import statistics
import time

import torch
from segment_anything import sam_model_registry

from stablesam import StableSam


def time_call(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]()
    model = StableSam(sam).eval()
    with torch.no_grad():  # trained-looking plugins: nonzero offsets, non-uniform α
        for p in model.plugin_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    emb = torch.randn(1, 256, 64, 64)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(args.prompts, 2, generator=g) * 600
    boxes = torch.cat([xy, xy + 100 + torch.rand(args.prompts, 2, generator=g) * 300], dim=1)

    def run(enabled: bool):
        model.plugins_enabled = enabled
        with torch.no_grad():
            model.decode(emb, boxes=boxes)

    for enabled in (False, True):  # warm-up
        run(enabled)
    ratios, t_sam, t_stable = [], [], []
    for _ in range(args.rounds):
        a = time_call(lambda: run(False), args.repeats)
        b = time_call(lambda: run(True), args.repeats)
        t_sam.append(a)
        t_stable.append(b)
        ratios.append(b / a)
    print(f"threads: {torch.get_num_threads()}, prompts per call: {args.prompts}, "
          f"embedding: 64x64x256, rounds: {args.rounds} x {args.repeats} calls")
    print(f"SAM decoder:        median {statistics.median(t_sam) * 1e3:8.1f} ms / call")
    print(f"Stable-SAM decoder: median {statistics.median(t_stable) * 1e3:8.1f} ms / call")
    print(f"overhead ratio Stable-SAM / SAM: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target <= 1.10, stretch 1.05")
    print(f"plugin parameters: {model.num_plugin_parameters():,} "
          f"({model.num_plugin_parameters() / 1e6:.3f} M)")


if __name__ == "__main__":
    main()
