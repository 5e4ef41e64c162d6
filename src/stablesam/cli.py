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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stablesam",
        description="Stable-SAM: Segment Anything made stable under low-quality prompts.",
    )
    parser.add_argument("--version", action="version", version=f"stablesam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions, buildable models, where weights are looked up")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
