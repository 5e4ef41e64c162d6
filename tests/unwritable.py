"""Folders no file can be created in, made in ways that hold for root too (root passes every
permission check, so a chmod'ed folder only binds other users), and the one-line error check."""

import os
from pathlib import Path

import pytest

KINDS = ("under-a-file", "proc", "read-only")


def unwritable_folder(tmp_path: Path, kind: str) -> Path:
    """A folder path where no file can be created: below a regular file, in /proc, or a
    read-only folder (skipped where chmod does not bind: as root)."""
    if kind == "under-a-file":
        (tmp_path / "a-file").write_text("not a folder")
        return tmp_path / "a-file" / "sub"
    if kind == "proc":
        if not os.path.isdir("/proc/self"):
            pytest.skip("no /proc on this system")
        return Path("/proc")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0 or os.access(folder, os.W_OK):
        pytest.skip("chmod does not stop this user from writing (root): covered by under-a-file and proc")
    return folder


def one_line_error(rc: int, err: str, *words: str) -> None:
    """Exit code 2 and one line on stderr, naming each of `words`."""
    assert rc == 2 and len(err.splitlines()) == 1 and ": error: " in err, err
    assert "Traceback" not in err and all(w in err for w in words), err


def leftovers(folder: Path) -> list:
    """Files a failed write may have left: temporaries and probes."""
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".old")) or p.name.startswith(".stablesam-probe")]
