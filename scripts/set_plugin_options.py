#!/usr/bin/env python
"""Copy a plugin file with some of its decode-time options changed, e.g. the output selector:

    python scripts/set_plugin_options.py runs/x/plugin.pt runs/x/plugin_iou.pt selector=iou selector_margin=0.02

Only options that do not change what the plugin's weights mean can be set (the output selector
and refinement; `routing_temperature` is not among them: it changes what was trained). The copy
keeps the weights, the base it was trained for and its meta, and records what was changed.
`weights=untrained` also replaces the weights by a fresh plugin's (which is SAM itself), to
measure a decode-time option on SAM alone.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from stablesam.fileio import atomic_torch_save  # noqa: E402
from stablesam.models.files import read_plugin  # noqa: E402

SETTABLE = {"selector": str, "selector_margin": float, "refine": str, "refine_margin": float,
            "refine_below": float, "refine_clicks": int, "weights": str}
WEIGHTS = ("trained", "untrained")


def parse_options(items) -> dict:
    """['selector=iou', ...] -> {'selector': 'iou', ...}; ValueError names a bad item."""
    changes = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in SETTABLE:
            raise ValueError(f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(SETTABLE)}")
        changes[name] = SETTABLE[name](value)
    if changes.get("weights", "trained") not in WEIGHTS:
        raise ValueError(f"weights={changes['weights']}: expected one of {', '.join(WEIGHTS)}")
    return changes


def config_options(changes: dict) -> dict:
    """The PluginConfig fields among `changes` (all but `weights`)."""
    return {k: v for k, v in changes.items() if k != "weights"}


def set_options(source, target, changes: dict) -> None:
    """Write `target`: the plugin file `source` with the config options `changes`."""
    if Path(target).resolve() == Path(source).resolve():
        raise ValueError("the target must be another file")
    plugin = read_plugin(source)
    config = dataclasses.replace(plugin["config"], **config_options(changes))
    meta = {**plugin["meta"], "options_set": {**plugin["meta"].get("options_set", {}), **changes}}
    state = plugin["state_dict"]
    if changes.get("weights") == "untrained":
        state = untrained_state(config)
    atomic_torch_save({**plugin, "config": config.to_dict(), "state_dict": state, "meta": meta}, target)


def untrained_state(config) -> dict:
    """The weights of a fresh plugin of `config` (seed 0): with them Stable-SAM computes SAM."""
    import torch

    from stablesam.modeling.stable_sam import build_plugins

    torch.manual_seed(0)
    return {f"{name}.{k}": v.detach().clone() for name, module in build_plugins(config).items()
            for k, v in module.state_dict().items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("options", nargs="+", metavar="NAME=VALUE", help=f"one of {', '.join(SETTABLE)}")
    args = p.parse_args()
    try:
        changes = parse_options(args.options)
        set_options(args.source, args.target, changes)
    except ValueError as e:
        p.error(str(e))
    print(f"wrote {args.target}: {json.dumps(changes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
