"""What makes `stablesam annotate` resumable: a journal of finished images beside OUT.json.

`OUT.json.partial/` holds `job.json` (the fingerprint of the arguments that decide the output)
and `results.jsonl` (one line per finished image, appended and flushed to disk as each image
finishes; only the main process writes it). A run killed at any point leaves at worst a cut last
line, which the next run with the same arguments drops before it goes on; images already in the
journal are not run again. OUT.json is assembled from the journal in input order at the end, so
it is the same whatever the order images finished in, the engine or the number of workers.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from ..data.images import InputError
from ..fileio import write_text

JOURNAL_SUFFIX = ".partial"


def fingerprint(parts: Dict[str, Any], files: Iterable[Path]) -> Dict[str, Any]:
    """The arguments that decide OUT.json (`parts`) and a SHA-256 of the input files' content
    (a folder: of its files, by sorted name)."""
    digest = hashlib.sha256()
    for path in files:
        paths = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for p in paths:
            digest.update(p.name.encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return {**parts, "inputs_sha256": digest.hexdigest()}


class Journal:
    """The progress folder of one OUT.json: `open`, `append` per finished image, `read`."""

    def __init__(self, out: Path) -> None:
        self.folder = out.with_name(out.name + JOURNAL_SUFFIX)
        self.results = self.folder / "results.jsonl"
        self.index: Dict[int, tuple] = {}  # image id -> (offset, length) of its line
        self.problems: Dict[str, int] = {}  # counts of the problems of the images in the journal
        self.objects = 0
        self.created = False
        self._file = None

    def open(self, job: Dict[str, Any]) -> int:
        """Start a journal for `job` (the fingerprint), or resume the one there when its job is
        the same (one of another job is an InputError); returns the number of finished images."""
        job_file = self.folder / "job.json"
        if self.folder.exists():
            try:
                recorded = json.loads(job_file.read_text())
            except (OSError, ValueError):
                recorded = None
            if recorded != job:
                raise InputError(f"{self.folder} holds an unfinished run with other arguments or inputs; "
                                 "rerun that command to finish it, or delete the folder to start afresh")
            self._scan()
        else:
            self.folder.mkdir(parents=True)
            self.created = True
            write_text(job_file, json.dumps(job, indent=1, sort_keys=True))
        self._file = open(self.results, "ab")
        return len(self.index)

    def _scan(self) -> None:
        """Index the finished images; cut a last line that a killed run left incomplete."""
        if not self.results.exists():
            return
        good_end = 0
        with open(self.results, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    result = json.loads(line)
                except ValueError:
                    break
                if result["image_id"] not in self.index:
                    self.index[result["image_id"]] = (good_end, len(line))
                    self.count(result)
                good_end += len(line)
        if good_end != self.results.stat().st_size:
            os.truncate(self.results, good_end)

    def count(self, result: Dict[str, Any]) -> None:
        self.objects += len(result["annotations"])
        for reason in (problem[1] for problem in result["problems"]):
            self.problems[reason] = self.problems.get(reason, 0) + 1

    def __contains__(self, image_id: int) -> bool:
        return image_id in self.index

    def append(self, result: Dict[str, Any]) -> None:
        """Record a finished image (on disk when this returns)."""
        if result["image_id"] in self.index:
            return
        line = (json.dumps(result, separators=(",", ":")) + "\n").encode()
        offset = self._file.seek(0, os.SEEK_END)
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.index[result["image_id"]] = (offset, len(line))
        self.count(result)

    def read(self, image_id: int) -> Optional[Dict[str, Any]]:
        """The result of a finished image, or None."""
        if image_id not in self.index:
            return None
        offset, length = self.index[image_id]
        with open(self.results, "rb") as f:
            f.seek(offset)
            return json.loads(f.read(length))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Delete the journal's own files, and its folder if nothing else is left in it."""
        self.close()
        for own in (self.results, self.folder / "job.json"):
            own.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:  # something that is not ours is in there: keep it
            pass
