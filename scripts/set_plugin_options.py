#!/usr/bin/env python
"""Copy a plugin file with some of its decode-time options changed, e.g. the output selector:

    python scripts/set_plugin_options.py runs/x/plugin.pt runs/x/plugin_iou.pt selector=iou selector_margin=0.02

Only options that do not change the plugin's weights can be set (`selector`,
`selector_margin`, `routing_temperature` is not among them: it changes what was trained). The copy
keeps the weights, the base it was trained for and its meta, and records what was changed.
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

SETTABLE = {"selector": str, "selector_margin": float}


def parse_options(items) -> dict:
    """['selector=iou', ...] -> {'selector': 'iou', ...}; ValueError names a bad item."""
    changes = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in SETTABLE:
            raise ValueError(f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(SETTABLE)}")
        changes[name] = SETTABLE[name](value)
    return changes


def set_options(source, target, changes: dict) -> None:
    """Write `target`: the plugin file `source` with the config options `changes`."""
    if Path(target).resolve() == Path(source).resolve():
        raise ValueError("the target must be another file")
    plugin = read_plugin(source)
    config = dataclasses.replace(plugin["config"], **changes)
    meta = {**plugin["meta"], "options_set": {**plugin["meta"].get("options_set", {}), **changes}}
    atomic_torch_save({**plugin, "config": config.to_dict(), "meta": meta}, target)


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
