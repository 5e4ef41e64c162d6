#!/usr/bin/env python3
"""The commands and Python snippets of README.md, as the README shows them.

CI (`.ci/run`) and the tests read the README through this script, so what they run cannot drift
from what a reader copies. A fenced block is named by an HTML comment on the line before its
opening fence (invisible on the rendered page):

    <!-- readme: quick-start -->     the install + first segmentation command
    <!-- readme: test -->            the test command
    <!-- readme: not-run -->         a Python block the snippet test leaves out (the README says why)
    <!-- readme: fiftyone -->        the FiftyOne example: tests/test_fiftyone.py runs it in its own process

Usage: `python3 scripts/readme_commands.py quick-start` prints that block's command;
`--list` prints every block's name, language and line. Standard library only (CI runs it
before any virtual environment exists).
"""

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"^<!--\s*readme:\s*([\w-]+)\s*-->\s*$")
FENCE = re.compile(r"^(`{3,})(\S*)\s*$")


@dataclass
class Block:
    lang: str  # the fence's language ("bash", "python", "" for none)
    code: str
    line: int  # 1-based line of the opening fence
    name: Optional[str] = None  # the `<!-- readme: NAME -->` marker before it, if any


def blocks(text: str) -> List[Block]:
    """Every fenced code block of `text`, in order."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m.group(1), i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != fence:
            j += 1
        if j == len(lines):
            raise ValueError(f"README line {start + 1}: code block never closed")
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(prev.strip())
        out.append(Block(m.group(2), "\n".join(lines[start + 1 : j]) + "\n", start + 1,
                         marker.group(1) if marker else None))
        i = j + 1
    return out


def named(name: str, text: Optional[str] = None) -> Block:
    """The one block marked `<!-- readme: NAME -->`; ValueError unless there is exactly one."""
    found = [b for b in blocks(README.read_text() if text is None else text) if b.name == name]
    if len(found) != 1:
        raise ValueError(f"README.md has {len(found)} blocks marked '<!-- readme: {name} -->' (want 1)")
    return found[0]


def command(name: str, text: Optional[str] = None) -> str:
    """A named shell block as one command line (no comments, no continuation lines)."""
    block = named(name, text)
    lines = [ln for ln in block.code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1 or lines[0].rstrip().endswith("\\"):
        raise ValueError(f"README line {block.line}: the '{name}' block must hold one command line")
    return lines[0].strip()


def python_snippets(text: Optional[str] = None) -> List[Block]:
    """The README's Python blocks that are meant to run as written here (all but `not-run`, and
    `fiftyone`, which its own test runs in a process of its own)."""
    return [b for b in blocks(README.read_text() if text is None else text)
            if b.lang == "python" and b.name not in ("not-run", "fiftyone")]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", nargs="?", help="a block name, e.g. quick-start or test")
    p.add_argument("--list", action="store_true", help="list the README's code blocks")
    args = p.parse_args(argv)
    try:
        if args.list:
            for b in blocks(README.read_text()):
                print(f"line {b.line}: {b.lang or '-'} {b.name or ''}".rstrip())
            return 0
        if not args.name:
            p.error("give a block name or --list")
        print(command(args.name))
    except ValueError as e:
        print(f"readme_commands: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
