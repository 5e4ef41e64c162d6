"""The `stablesam` command line."""

import argparse
import sys
from typing import List, Optional

from . import __version__


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import segment_anything  # noqa: F401
    import torch
    import torchvision

    from .checkpoints import MODEL_TYPES
    from .embedded import BASE_FILE, PLUGIN_FILE, WEIGHTS_DIR, embedded_available
    from .modeling import PluginConfig
    from .modeling.deformable_sampling import DeformableSamplingPlugin
    from .modeling.dynamic_routing import DynamicRoutingPlugin

    try:
        from importlib.metadata import version

        sam_version = version("segment-anything")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        sam_version = "unknown"
    config = PluginConfig()
    dsp = DeformableSamplingPlugin(config.embed_dim, config.kernel_size, config.offset_range)
    drp = DynamicRoutingPlugin(config.embed_dim, config.routing_hidden)
    n_dsp = sum(p.numel() for p in dsp.parameters())
    n_drp = sum(p.numel() for p in drp.parameters())
    cuda = torch.cuda.is_available()
    print(f"stablesam {__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, segment-anything {sam_version}")
    print(f"device: {'cuda (' + torch.cuda.get_device_name(0) + ')' if cuda else 'cpu'}")
    print(f"plugin parameters (256-d decoder): {n_dsp + n_drp:,} "
          f"({(n_dsp + n_drp) / 1e6:.3f} M; DSP {n_dsp:,}, DRP {n_drp:,})")
    print(f"default plugin config: {config.to_dict()}")
    print("models:")
    for t in MODEL_TYPES:
        print(f"  {t}:PATH   official Meta SAM checkpoint (.pth) at PATH (plugins off)")
    print("  SPEC+plugin=PATH   Stable-SAM: SPEC with the plugin file at PATH")
    state = "shipped" if embedded_available() else "not shipped in this version"
    print(f"  tiny-sam, tiny-stable-sam   embedded default model ({state})")
    print("weights are looked up at:")
    print("  official checkpoints: the PATH given in the model SPEC (nothing is downloaded)")
    print(f"  embedded weights: {WEIGHTS_DIR}")
    for f in (BASE_FILE, PLUGIN_FILE):
        size = f"{f.stat().st_size / 1e6:.2f} MB" if f.is_file() else "missing"
        print(f"    {f.name}: {size}")
    return 0


class UsageError(Exception):
    """Bad input found before work starts: one line on stderr, exit code 2."""


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="dataset folders (images/ + masks/ paired by stem) or COCO instance JSON files")
    p.add_argument("--split", metavar="FILE", help="a split list (lines 'dataset/stem'): use only those objects")
    p.add_argument("--mask-mode", default="auto", choices=["auto", "threshold", "nonzero", "instances"],
                   help="how a mask file becomes objects (default auto: palette PNG -> ids > 0, else > 127)")
    p.add_argument("--threshold", type=int, default=127, help="foreground threshold for --mask-mode threshold")
    p.add_argument("--ignore-value", type=int, default=None, help="mask value meaning ignore (void)")
    p.add_argument("--image-dir", default=None, help="COCO: folder of the images (default: beside the JSON)")
    p.add_argument("--min-area", type=float, default=0.0, help="COCO: skip annotations smaller than this (px)")
    p.add_argument("--strict", action="store_true", help="bad files are errors instead of skipped warnings")


def open_datasets(args: argparse.Namespace) -> list:
    from pathlib import Path

    from .data import DataError, load_split, open_dataset

    split = load_split(args.split) if args.split else None
    datasets = []
    for path in args.data:
        p = Path(path)
        if not p.exists():
            raise UsageError(f"--data {path}: no such file or folder")
        options = dict(strict=args.strict)
        if p.is_dir():
            options.update(mask_mode=args.mask_mode, threshold=args.threshold, ignore_value=args.ignore_value)
            if split is not None:
                stems = split.get(p.resolve().name)
                if not stems:
                    raise UsageError(f"--split {args.split} lists no objects of dataset {p.resolve().name!r}")
                options["stems"] = stems
        else:
            options.update(min_area=args.min_area, image_dir=args.image_dir)
        try:
            datasets.append(open_dataset(p, **options))
        except DataError as e:
            raise UsageError(str(e)) from None
    return datasets


def cmd_eval(args: argparse.Namespace) -> int:
    import json
    import platform
    import shlex
    from pathlib import Path

    import numpy as np
    import torch

    from .cache import EmbeddingCache, default_cache_dir
    from .evaluation import EvalConfig, evaluate
    from .models import SpecError, build_segmenter, parse_model_spec
    from .prompts import parse_prompts
    from .reports import markdown_tables, write_reports

    try:
        prompts = parse_prompts(args.prompts)
    except ValueError as e:
        raise UsageError(f"--prompts: {e}") from None
    if args.samples < 1:
        raise UsageError("--samples must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    specs = []
    for text in args.model or ["tiny-stable-sam"]:
        try:
            specs.append(parse_model_spec(text))
        except SpecError as e:
            raise UsageError(str(e)) from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"--model given twice: {names}")
    datasets = open_datasets(args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cache = EmbeddingCache(None if args.no_cache else (args.cache or default_cache_dir()))
    try:
        segmenters = [build_segmenter(s, cache, args.device, args.force, args.seed) for s in specs]
    except SpecError as e:
        raise UsageError(str(e)) from None
    config = EvalConfig(prompts, args.samples, args.seed, args.limit, args.multimask)
    result = evaluate(datasets, segmenters, config)
    if not result.rows:
        raise UsageError("no object could be evaluated (see the warnings above)")
    import segment_anything  # noqa: F401

    versions = {"stablesam": __version__, "torch": torch.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    meta = {"samples": args.samples, "seed": args.seed, "prompts": [p.name for p in prompts],
            "command": "stablesam " + shlex.join(args.argv), "versions": versions,
            "multimask": args.multimask}
    files = write_reports(result, [s.name for s in segmenters], Path(args.out), meta)
    print(markdown_tables(result, [s.name for s in segmenters]))
    print(f"encoder runs: {cache.encoder_calls} (cache: {cache.root or 'memory only'})")
    print("wrote " + ", ".join(str(f) for f in files.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stablesam",
        description="Stable-SAM: Segment Anything made stable under low-quality prompts.",
    )
    parser.add_argument("--version", action="version", version=f"stablesam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions, buildable models, where weights are looked up")
    info.set_defaults(func=cmd_info)

    from .prompts import DEFAULT_PROMPTS

    ev = sub.add_parser("eval", help="prompt-robustness benchmark: models x datasets x prompt types",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=__import__("stablesam.models", fromlist=["ACCEPTED"]).ACCEPTED)
    add_data_options(ev)
    ev.add_argument("--model", action="append", metavar="SPEC",
                    help="a model SPEC (repeat to compare; default tiny-stable-sam)")
    ev.add_argument("--prompts", default=DEFAULT_PROMPTS, help=f"comma-separated prompt types (default {DEFAULT_PROMPTS})")
    ev.add_argument("--samples", type=int, default=20, metavar="K", help="prompts per object and type (default 20)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--limit", type=int, default=None, metavar="N", help="first N objects of each dataset")
    ev.add_argument("--out", default="stablesam-eval", metavar="DIR", help="output folder (default ./stablesam-eval)")
    ev.add_argument("--multimask", action="store_true", help="3 masks per prompt, keep the best predicted IoU")
    ev.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder (default: user cache dir)")
    ev.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    ev.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    ev.add_argument("--force", action="store_true", help="load plugin/decoder files trained for another base")
    ev.set_defaults(func=cmd_eval)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as e:
        print(f"stablesam {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stablesam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
