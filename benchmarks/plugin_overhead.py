"""Decoder cost of the plugins: Stable-X / X time for 20 box prompts on a 64x64x256 image
embedding (1024 px input), measured side by side (alternating), median of the ratios, for
SAM 1 (ViT-B decoder) and SAM 2.1 (hiera-tiny decoder, with its two high-res feature maps);
`--family sam3`: SAM 3's interactive tracker decoder on its 72x72 grid (1008 px input, two
high-res maps); `--family embedded`: the embedded tiny SAM's decoder on its own 32x32 grid (512 px input).

    python benchmarks/plugin_overhead.py [--family sam1|sam2|sam3|embedded|all] [--prompts 20] [--rounds 15] [--threads N]
        [--plugin-config '{"projection_rank": 0, "offset_width": 0}']   # another PluginConfig (this one: the paper's)
"""

import argparse
import json
import statistics
import time

import torch

from stablesam import PluginConfig, StableSam


def time_call(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def build(family: str):
    """(model of the family (random init but the embedded one), its embedding extras)."""
    if family == "embedded":
        from stablesam.models.embedded import load_embedded_sam

        return load_embedded_sam()[0], {}
    if family == "sam1":
        from segment_anything import sam_model_registry

        return sam_model_registry["vit_b"](), {}
    from stablesam.backends import get_backend

    if family == "sam3":
        return get_backend("sam3").build_tracker(), {
            "high_res_feats": [torch.randn(1, 32, 288, 288), torch.randn(1, 64, 144, 144)]}
    return get_backend("sam2").build("sam2.1_hiera_t"), {
        "high_res_feats": [torch.randn(1, 32, 256, 256), torch.randn(1, 64, 128, 128)]}


def measure(family: str, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    base, extras = build(family)
    model = StableSam(base, PluginConfig.from_dict(json.loads(args.plugin_config))).eval()
    with torch.no_grad():  # trained-looking plugins: nonzero offsets, non-uniform α
        for p in model.plugin_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    grid = {"embedded": 32, "sam3": 72}.get(family, 64)
    emb = torch.randn(1, 256, grid, grid)
    g = torch.Generator().manual_seed(0)
    scale = grid / 64  # boxes in the model's input frame (1024 px, or 512 px for the embedded model)
    xy = torch.rand(args.prompts, 2, generator=g) * 600 * scale
    boxes = torch.cat([xy, xy + (100 + torch.rand(args.prompts, 2, generator=g) * 300) * scale], dim=1)

    def run(enabled: bool):
        model.plugins_enabled = enabled
        with torch.no_grad():
            model.decode(emb, boxes=boxes, extras=extras)

    for enabled in (False, True):  # warm-up
        run(enabled)
    ratios, t_base, t_stable = [], [], []
    for _ in range(args.rounds):
        a = time_call(lambda: run(False), args.repeats)
        b = time_call(lambda: run(True), args.repeats)
        t_base.append(a)
        t_stable.append(b)
        ratios.append(b / a)
    name = {"sam1": "SAM", "sam2": "SAM 2.1", "sam3": "SAM 3", "embedded": "tiny SAM"}[family]
    print(f"[{family}] plugin config: {args.plugin_config}; threads: {torch.get_num_threads()}, prompts per call: {args.prompts}, "
          f"embedding: {grid}x{grid}x256, rounds: {args.rounds} x {args.repeats} calls")
    print(f"{name + ' decoder:':<28}median {statistics.median(t_base) * 1e3:8.1f} ms / call")
    print(f"{'Stable-' + name + ' decoder:':<28}median {statistics.median(t_stable) * 1e3:8.1f} ms / call")
    print(f"overhead ratio Stable-{name} / {name}: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target <= 1.10, stretch 1.05")
    if model.last_refined is not None:  # refinement's second pass costs in proportion to the prompts it takes
        print(f"prompts refined (second pass): {int(model.last_refined.sum())} of {len(model.last_refined)}")
    print(f"plugin parameters: {model.num_plugin_parameters():,} "
          f"({model.num_plugin_parameters() / 1e6:.3f} M)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("sam1", "sam2", "sam3", "embedded", "all"), default="all")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plugin-config", default="{}", help="PluginConfig fields as JSON (default: the default config)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for family in (("sam1", "sam2", "embedded") if args.family == "all" else (args.family,)):
        measure(family, args)


if __name__ == "__main__":
    main()
