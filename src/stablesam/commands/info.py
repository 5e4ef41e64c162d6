"""`stablesam info`: versions, the SAM families and whether they are installed, buildable
models, where weights are looked up."""

import argparse

from .. import __version__
from .common import package_version


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    from ..models.embedded import BASE_FILE, NAMED_PLUGINS, PLUGIN_FILE, WEIGHTS_DIR, embedded_available, plugin_path
    from ..modeling import PluginConfig
    from ..modeling.stable_sam import build_plugin_pair
    from ..models.spec import ACCEPTED

    sam_version = package_version("segment-anything")
    config = PluginConfig()
    dsp, drp = build_plugin_pair(config)
    n_dsp = sum(p.numel() for p in dsp.parameters())
    n_drp = sum(p.numel() for p in drp.parameters())
    cuda = torch.cuda.is_available()
    print(f"stablesam {__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"torchvision {package_version('torchvision')}, segment-anything {sam_version}")
    print(f"device: {'cuda (' + torch.cuda.get_device_name(0) + ')' if cuda else 'cpu'}")
    from ..modeling.registry import families, installed

    def family_state(backend) -> str:
        return "installed" if installed(backend.family) else f"not installed (pip install \"stable-segment-anything[{backend.extra}]\")"

    print("SAM families: " + "; ".join(f"{b.title} {family_state(b)}" for b in families()))
    print(f"plugin parameters (256-d decoder): {n_dsp + n_drp:,} "
          f"({(n_dsp + n_drp) / 1e6:.3f} M; DSP {n_dsp:,}, DRP {n_drp:,})")
    print(f"default plugin config: {config.to_dict()}")
    print("model SPECs (segment and demo take the SAM ones, not grabcut):")
    print("\n".join(ACCEPTED.splitlines()[1:]))
    if embedded_available():
        # the file's record only: mmap reads no tensor (info loads no model)
        meta = torch.load(BASE_FILE, map_location="cpu", weights_only=True, mmap=True).get("meta", {})
        data = meta.get("data", {})
        print(f"  tiny-sam   embedded base ({BASE_FILE.stat().st_size / 1e6:.1f} MB): trained from scratch on "
              f"{', '.join(data.get('datasets', [])) or '?'} ({data.get('train_images', '?')} training images "
              f"of the committed split, {meta.get('steps', '?')} steps, {meta.get('minutes', '?')} min)")
        print(f"  tiny-stable-sam   embedded base + its Stable-SAM plugin ({PLUGIN_FILE.stat().st_size / 1e3:.0f} kB; "
              "the default SPEC)")
        print("  embedded plugins, when to use which:")
        for head, (name, use) in NAMED_PLUGINS.items():
            print(f"    {head:<24}{use}")
    else:
        print("  tiny-sam, tiny-stable-sam   embedded default model (not shipped in this version)")
    print("weights are looked up at:")
    print("  official checkpoints: the PATH given in the model SPEC (nothing is downloaded)")
    print(f"  embedded weights: {WEIGHTS_DIR}")
    for f in (BASE_FILE, *map(plugin_path, NAMED_PLUGINS)):
        size = f"{f.stat().st_size / 1e6:.2f} MB" if f.is_file() else "missing"
        print(f"    {f.name}: {size}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="versions, buildable models, where weights are looked up")
    info.set_defaults(func=cmd_info)
