"""What `stablesam reproduce` keeps between runs: OUT/reproduce.json (the settings and the
finished stages), and the file-system checks and copies of its stages."""

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

from ..fileio import atomic_write, write_text

STATE_FORMAT = 1


class ReproduceError(ValueError):
    """The run cannot start or go on; the message (one line) says why."""


class State:
    """OUT/reproduce.json: the settings and the finished stages (rewritten atomically)."""

    def __init__(self, path: Path, settings: Dict):
        self.path = path
        self.data = {"format": STATE_FORMAT, "settings": settings, "done": {}}
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise ReproduceError(f"{path} is unreadable ({e}); pick another --out") from None
            if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
                raise ReproduceError(f"{path} is not a stablesam reproduce record; pick another --out")
            changed = sorted(k for k in settings if saved.get("settings", {}).get(k) != settings[k])
            if changed:
                raise ReproduceError(f"{path.parent} holds a run with other settings ({', '.join(changed)}); "
                                     "rerun it as it was started, or pick another --out")
            self.data["done"] = dict(saved.get("done", {}))

    def done(self, stage: str) -> Optional[Dict]:
        return self.data["done"].get(stage)

    def finish(self, stage: str, info: Optional[Dict] = None) -> None:
        self.data["done"][stage] = info or {}
        write_text(self.path, json.dumps(self.data, indent=2))


def free_gb(folder: Path) -> Optional[float]:
    """Free space (GB) on the disk of `folder` (or of its nearest existing parent)."""
    p = Path(folder).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free / 1e9
    except OSError:
        return None


def copy_file(src: Path, dst: Path) -> None:
    """src copied to dst through a temporary file and a rename."""
    def write(f) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, f)

    atomic_write(dst, write)


def config_dict(config) -> Dict:
    """A `ReproduceConfig` as JSON values (paths as text)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
