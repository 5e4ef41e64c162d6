"""What the commands share: the usage error, the dataset and runtime options, opening the
datasets and the embedding cache, and options whose default and help come from a config
dataclass field (so no default is written twice)."""

import argparse
import dataclasses
from typing import Any, Callable


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class UsageError(Exception):
    """Bad input found before work starts: one line on stderr, exit code 2."""


def input_errors_as_usage(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The command `run` with bad input found while it works (InputError) reported as a
    UsageError: its first line on stderr, exit code 2."""

    def command(args: argparse.Namespace) -> int:
        from ..data.images import InputError  # (numpy: imported when a command runs)

        try:
            return run(args)
        except InputError as e:
            raise UsageError(str(e).splitlines()[0]) from None

    return command


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="SPEC",
                   help="datasets: [NAME=]FOLDER (images/ + masks/, im/ + gt/, ... or images and .png masks side "
                        "by side), [NAME=]IMAGES_DIR:MASKS_DIR, a COCO instance .json, or a list file (.txt/.json) "
                        "of such SPECs")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="relative paths inside list files (and --data SPECs not found here) are taken under DIR")
    p.add_argument("--split", metavar="FILE", help="a split list (lines 'dataset/stem'): use only those objects")
    p.add_argument("--mask-mode", default="auto", choices=["auto", "threshold", "nonzero", "instances"],
                   help="how a mask file becomes objects (default auto: palette PNG -> ids > 0, else > 127)")
    p.add_argument("--threshold", type=int, default=127, help="foreground threshold for --mask-mode threshold")
    p.add_argument("--ignore-value", type=int, default=None, help="mask value meaning ignore (void)")
    p.add_argument("--image-dir", default=None, help="COCO: folder of the images (default: beside the JSON)")
    p.add_argument("--min-area", type=float, default=0.0, help="COCO: skip annotations smaller than this (px)")
    p.add_argument("--strict", action="store_true", help="bad files are errors instead of skipped warnings")


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder (default: user cache dir)")
    p.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--force", action="store_true",
                   help="write into an --out folder that is not empty (only this command's files are replaced, "
                        "each atomically; other files are kept)")
    p.add_argument("--force-plugin", action="store_true", help="load plugin/decoder files trained for another base")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="autocast of the image encoder (cached embeddings have keys of their own), the "
                        "training steps and the evaluation; the plugins' offsets and sampling stay fp32 "
                        "(default fp32; bf16 on recent GPUs)")


def open_cache(args: argparse.Namespace):
    """The embedding cache of --cache / --no-cache: a path that cannot be a folder is a
    UsageError; one that cannot be written is read only (with a warning)."""
    from ..models.cache import CacheError, EmbeddingCache, default_cache_dir

    precision = getattr(args, "precision", "fp32")
    if args.no_cache:
        return EmbeddingCache(None, precision=precision)
    root = args.cache or default_cache_dir()
    try:
        return EmbeddingCache.checked(root, precision=precision)
    except CacheError as e:
        raise UsageError(f"--cache {root}: {e}") from None


def check_out_folder(out: str, force: bool = False, hint: str = "") -> None:
    """--out of eval and train: a new or empty folder (any folder with `force`; `hint`: what else
    is accepted), where files can be created."""
    from pathlib import Path

    from ..fileio import OutputError, check_output_folder

    try:
        check_output_folder(Path(out), "--out", force, hint)
    except OutputError as e:
        raise UsageError(str(e)) from None


def open_datasets(args: argparse.Namespace) -> list:
    from ..data.datasets import DataError, load_split
    from ..data.layouts import parse_spec

    try:
        split = load_split(args.split) if args.split else None
    except (DataError, OSError, ValueError) as e:  # missing, a folder, unreadable, not text
        raise UsageError(f"--split {args.split}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    datasets = []
    for spec in args.data:
        try:
            sources = parse_spec(spec, image_dir=args.image_dir, data_root=args.data_root)
        except DataError as e:
            raise UsageError(f"--data {spec}: {e}") from None
        for source in sources:
            options = dict(strict=args.strict, mask_mode=args.mask_mode, threshold=args.threshold,
                           ignore_value=args.ignore_value, min_area=args.min_area)
            if split is not None and source.coco is None:
                stems = split.get(source.name)
                if not stems:
                    raise UsageError(f"--split {args.split} lists no objects of dataset {source.name!r}")
                options["stems"] = stems
            try:
                datasets.append(source.open(**options))
            except DataError as e:
                raise UsageError(str(e)) from None
    return datasets


def field_default(source: type, name: str) -> Any:
    """The default of dataclass `source`'s field `name` (default_factory called)."""
    for f in dataclasses.fields(source):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ValueError(f"{source.__name__}.{name} has no default")
    raise ValueError(f"{source.__name__} has no field {name!r}")


def shown(value: Any) -> str:
    """A default as help text writes it: 8, 0.5, 1e-3 (not 0.001)."""
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return str(value)


def config_option(p: argparse.ArgumentParser, flag: str, source: type, name: str, help: str,
                  to_cli: Callable[[Any], Any] = lambda v: v, show: Callable[[Any], str] = shown,
                  **kwargs: Any) -> argparse.Action:
    """An option whose default is config dataclass `source`'s field `name` (through `to_cli`, e.g.
    a tuple to its comma-separated text); `{default}` in `help` is that default as `show` writes
    it. The action records where its default comes from (`config_source`) for the CLI's tests."""
    value = field_default(source, name)
    action = p.add_argument(flag, default=to_cli(value), help=help.format(default=show(value)), **kwargs)
    action.config_source = (source, name, to_cli)
    return action
