"""File I/O: where a command's files go, checked before any work, and every write of the
package made atomic (written beside, renamed into place: all together or not at all).

`folder_problem` says why files cannot be created in a folder (a file or a broken link on the
way, no permission, a file system that takes no new files such as /proc) by trying to: the
only test that also holds for root, who passes every permission check. `write_together`
writes each file into a temporary file beside it and renames them into place only when all
were written, so a command leaves every output or none (a failed rename puts back what was
renamed before it). A replaced file keeps its permission bits; a new one gets the umask's.

No command deletes or replaces a file it did not write: an output file that exists is refused
unless the user passes --force (`check_new_file`), and an output folder must be new or empty
unless --force (`check_output_folder`); with --force a command replaces only the files it
writes itself, each atomically, and keeps every other file in the folder.
"""

import errno
import glob
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image

from .data.images import InputError

PathLike = Union[str, os.PathLike]


class OutputError(InputError):
    """An output that cannot be written (the CLI: one line, exit code 2)."""


def broken_link(path: Path) -> Optional[str]:
    """Why `path` is a link that leads to nothing (a loop, a missing target), or None."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{path} is a symbolic link loop"
        return f"{path} is a link to {os.readlink(path)}, which does not exist"


def not_a_folder(path: Path) -> Optional[str]:
    """Why an existing name (or a link) is no folder, or None when it is one or is missing."""
    if path.is_dir():
        return None
    return broken_link(path) or (f"{path} is a file, not a folder" if path.exists() else None)


def nearest_folder(folder: Path) -> Tuple[Path, Optional[str]]:
    """`folder` if it exists, else the nearest existing folder above it (where creating it
    starts); with why a name on the way is no folder (a file, a link to nothing, a link loop)."""
    existing = Path(folder)
    while not existing.is_dir():
        problem = not_a_folder(existing)
        if problem or existing.parent == existing:
            return existing, problem
        existing = existing.parent
    return existing, None


def creation_problem(folder: Path) -> Optional[str]:
    """Why no file can be created in the existing `folder`, found by creating and deleting one."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".stablesam-probe.", dir=folder)
    except OSError as e:
        return f"cannot create files in {folder} ({e.strerror or e})"
    os.close(fd)
    os.unlink(probe)
    return None


def folder_problem(folder: Path) -> Optional[str]:
    """Why files cannot be created in `folder` (created if missing), or None when they can."""
    existing, problem = nearest_folder(folder)
    return problem or creation_problem(existing)


def check_writable(path: Path, option: str, folder: bool = False) -> None:
    """OutputError when `path` (a file, or with folder=True a folder) cannot be written."""
    path = Path(path)
    if not folder and path.exists() and not path.is_file():
        raise OutputError(f"{option} {path} exists and is not a regular file")
    problem = folder_problem(path if folder else path.parent)
    if problem:
        raise OutputError(f"{option} {path}: {problem}")


def check_new_file(path: Path, option: str, force: bool) -> None:
    """OutputError when the output file `path` exists (or is a link) and `force` is off."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputError(f"{option} {path} exists; pass --force to replace it (or give a new name)")


def check_output_folder(folder: Path, option: str, force: bool, hint: str = "") -> None:
    """An output folder: OutputError when `folder` is no folder, is not empty and `force` is
    off (`hint` adds what else is accepted), or is where files cannot be created."""
    folder = Path(folder)
    problem = not_a_folder(folder)
    if problem:
        raise OutputError(f"{option} {problem}")
    if folder.is_dir() and not force and any(folder.iterdir()):
        raise OutputError(f"{option} {folder} is not empty; give a new or empty folder{hint}, or pass --force to "
                          "replace this command's own files in it (other files are kept)")
    problem = folder_problem(folder)
    if problem:
        raise OutputError(f"{option} {folder}: {problem}")


def stage(path: Path, write: Callable) -> str:
    """write(f) into a new temporary file beside `path` (same folder: the rename is atomic),
    with the mode `path` has (or the umask's for a new file); returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            from .fileio import current_umask

            mode = 0o666 & ~current_umask()  # mkstemp makes 0600 files
        os.chmod(tmp, mode)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # a full disk names no file: name the one being written
        raise
    return tmp


def write_together(files: Dict[Path, Callable]) -> None:
    """Write {path: write(f)} so that either every path gets its new content or none changes."""
    staged: List[Tuple[Path, str]] = []
    done: List[Tuple[Path, bool, Optional[str]]] = []  # renamed so far: existed before, a link to the old file
    try:
        for path, write in files.items():
            staged.append((Path(path), stage(Path(path), write)))
        for path, tmp in staged:
            existed, backup = path.is_file(), None
            if existed and len(staged) > 1:
                try:
                    os.link(path, tmp + ".old")
                    backup = tmp + ".old"
                except OSError:  # no hard links here: that old file cannot be put back
                    pass
            done.append((path, existed, backup))
            os.replace(tmp, path)
    except BaseException:
        for path, existed, backup in reversed(done):
            try:
                if backup is not None:
                    os.replace(backup, path)
                elif not existed:
                    path.unlink(missing_ok=True)
            except OSError:
                pass  # the error being raised says more
        for _, tmp in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        for _, _, backup in done:
            if backup is not None:
                Path(backup).unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, write: Callable) -> None:
    """write(f) into a temporary file beside `path`, then rename it into place (a replaced file
    keeps its mode; `write_together` writes several files all or none)."""
    write_together({Path(path): write})


def remove_stale_temps(folder: Path, names: List[str]) -> None:
    """Delete the temporary files an `atomic_write` of `folder/name` leaves when its process is
    killed mid-write (call it where no other process writes these files)."""
    for name in names:
        for tmp in folder.glob(glob.escape(name) + ".*.tmp"):
            tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


# Output formats by extension: a mask must survive lossless (0/255 only); an overlay is a picture.
MASK_FORMATS: Dict[str, str] = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


OVERLAY_FORMATS: Dict[str, str] = {**MASK_FORMATS, ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def image_writer(path: Path, array: np.ndarray):
    """write(f) that writes an image in the format `path`'s extension names (`OVERLAY_FORMATS`)."""
    fmt = OVERLAY_FORMATS[path.suffix.lower()]

    def write(f):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
        f.write(buf.getvalue())

    return write


def write_image(path: Path, array: np.ndarray) -> None:
    """Atomically write an image in the format its extension names (`OVERLAY_FORMATS`)."""
    write_together({path: image_writer(path, array)})
