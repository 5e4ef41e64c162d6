"""The `stablesam` command line: a launcher. Each command module (`stablesam.commands.*`,
`stablesam.label_studio.command`) registers its subparser and runs it; this module builds the
parser, and prints a `UsageError` or a warning as one line."""

import argparse
import contextlib
import sys
import warnings
from typing import Iterator, List, Optional

from . import __version__
from .commands import demo, export_onnx, info, segment, train
from .commands import eval as eval_command
from .commands.common import UsageError
from .label_studio import command as label_studio_command


# The subcommands in the order `stablesam --help` lists them; each module registers its own
# subparser (`register(sub)`), with defaults and help from its config dataclasses.
COMMANDS = (info, eval_command, train, segment, export_onnx, demo, label_studio_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stablesam",
        description="Stable-SAM: Segment Anything made stable under low-quality prompts.",
    )
    parser.add_argument("--version", action="version", version=f"stablesam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
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
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
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
