"""The `stablesam` command line: a launcher. Each command module (`stablesam.commands.*`,
`stablesam.label_studio.command`) registers its subparser and runs it; this module builds the
parser, and prints a `UsageError` or a warning as one line.

Start-up is kept short: only the module of the command being run is imported (the others are
listed by name and one-line help), and command modules import torch and the SAM packages inside
the functions that run a command, so `stablesam --help` loads no model and no torch."""

import argparse
import contextlib
import sys
import warnings
from importlib import import_module
from typing import Iterator, List, Optional

from . import __version__
from .commands.common import UsageError


# The subcommands in the order `stablesam --help` lists them: name -> (the module that registers
# its subparser with `register(sub)` and runs it, the one-line help `stablesam --help` shows: the
# module's own, tests/test_keep_files.py checks; None: the module is imported and registered always).
COMMANDS = {
    "info": ("stablesam.commands.info", "versions, buildable models, where weights are looked up"),
    "eval": ("stablesam.commands.eval", "prompt-robustness benchmark: models x datasets x prompt types"),
    "train": ("stablesam.commands.train", "train the Stable-SAM plugins (or the decoder, DT baseline) with RTS"),
    "reproduce": ("stablesam.commands.reproduce", "the paper's experiment on your SAM checkpoint: train, evaluate, report"),
    "segment": ("stablesam.commands.segment", "segment one image from a box and/or clicks"),
    "annotate": ("stablesam.commands.annotate", None),
    "export-onnx": ("stablesam.commands.export_onnx", "ONNX file of the prompt path (SAM's SamOnnxModel contract + alpha)"),
    "demo": ("stablesam.commands.demo", "interactive page: draw a box or click, see SAM and Stable-SAM side by side"),
    "label-studio": ("stablesam.label_studio.command",
                     "Label Studio ML backend: masks from boxes and clicks, interactive"),
}


def command_module(name: str):
    """The module of command `name` (imported now)."""
    return import_module(COMMANDS[name][0])


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    """The parser of `stablesam`. With `argv`, only the command it names (if any) gets its full
    subparser, the others a placeholder with their help (what `stablesam --help` shows), so
    only that command's module is imported; without, every command's full subparser."""
    parser = argparse.ArgumentParser(
        prog="stablesam",
        description="Stable-SAM: Segment Anything made stable under low-quality prompts.",
    )
    parser.add_argument("--version", action="version", version=f"stablesam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (_, summary) in COMMANDS.items():
        if wanted is None or name == wanted or summary is None:
            command_module(name).register(sub)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Warnings (a skipped bad file, ...) as one line each: 'PREFIX: warning: message', without
    the source line Python prints under a warning by default."""
    from .data.datasets import DataWarning

    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None) -> str:
        kind = "" if issubclass(category, DataWarning) else f" ({category.__name__})"
        return f"{prefix}: warning{kind}: {str(message).splitlines()[0] if str(message) else ''}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = original


def join_negative_values(argv: List[str]) -> List[str]:
    """`--box -5,0,9,9` -> `--box=-5,0,9,9`: argparse would take '-5,0,9,9' for an option."""
    out: List[str] = []
    for arg in argv:
        if out and out[-1] in ("--box", "--point") and arg.startswith("-") and not arg.startswith("--"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 100:  # argparse's time grows with the square of repeated options: count them first
        from .limits import repeated_option_problem

        problem = repeated_option_problem(argv)
        if problem:
            print(f"stablesam {argv[0]}: error: {problem}", file=sys.stderr)
            return 2
    parser = build_parser(argv)
    args = parser.parse_args(join_negative_values(argv))
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with one_line_warnings(f"stablesam {args.command}"):
            return args.func(args)
    except UsageError as e:
        print(f"stablesam {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stablesam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
