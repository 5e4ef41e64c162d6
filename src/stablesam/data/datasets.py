"""Datasets of objects (image + one binary mask) for training and evaluation.

Validation happens in two steps:
- construction: pairing of files, image and mask headers (PIL reads only the header: format,
  size, mode) and, for instance masks, the mask ids. Bad pairs are dropped then, so `len()`
  and `.objects` hold only objects that passed these cheap checks.
- access: full decode of image and mask, size check, empty-mask check.
A problem is reported by file name: with strict=False as a `DataWarning` (the object is
skipped; iteration never raises for a bad file), with strict=True as a `DataError`.
A root that is not a dataset at all, or holds no usable object, is always a `DataError`.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np
from PIL import Image

from .images import InputError, load_image
from ..fileio import broken_link

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MASK_MODES = ("auto", "threshold", "nonzero", "instances")
PathLike = Union[str, Path]
TRIMAP_IGNORE = 128  # the "not classified" border band of a 0/128/255 trimap


class DataError(ValueError):
    """A dataset file or layout that cannot be used."""


class DataWarning(UserWarning):
    """A bad file or object that was skipped (strict=False)."""


@dataclass
class Sample:
    """One object: image (H, W, 3) uint8 RGB, mask (H, W) bool, ignore (H, W) bool or None."""

    dataset: str
    name: str
    image_path: Path
    image: np.ndarray
    mask: np.ndarray
    ignore: Optional[np.ndarray] = None


@dataclass(frozen=True)
class ObjectRef:
    """Lightweight id of one object; `instance` is a mask id (folders) or annotation id (COCO)."""

    name: str
    image_path: Path
    mask_path: Optional[Path] = None
    instance: Optional[int] = None


def is_trimap(m: np.ndarray) -> bool:
    """A grey mask holding exactly the values 0, 128 and 255 (Oxford-IIIT Pet's trimaps)."""
    if m.dtype != np.uint8:
        return False
    counts = np.bincount(m.ravel(), minlength=256)
    return bool(counts[TRIMAP_IGNORE] and counts[255] and counts.sum() == counts[0] + counts[128] + counts[255])


def read_image(path: PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB through the shared loader (`stablesam.data.images.load_image`, every image
    mode handled the same way as in the CLI and the demo), as stored: no EXIF rotation (masks
    and COCO polygons are drawn on the stored pixels) and no pixel limit but Pillow's
    decompression-bomb one. Raises DataError naming the file if it cannot be used."""
    try:
        return load_image(path, exif=False, max_pixels=None)  # prompts need 2 x 2 px (MIN_SIDE)
    except InputError as e:
        raise DataError(str(e)) from None


def read_mask(path: PathLike) -> tuple[np.ndarray, str]:
    """(H, W) array of mask values and the PIL mode; raises DataError naming the file."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            m = np.array(im)
    except Exception as e:
        raise DataError(f"cannot read mask {path}: {e}") from e
    if m.dtype == bool:  # mode "1"
        m = m.astype(np.uint8) * 255
    if m.ndim != 2:
        raise DataError(f"mask {path} must be single-channel (grey or palette), got shape {m.shape}")
    return m, mode


def _header(path: Path, what: str) -> tuple[tuple[int, int], str]:
    """((H, W), mode) from the file header only."""
    try:
        with Image.open(path) as im:
            return (im.height, im.width), im.mode
    except Exception as e:
        raise DataError(f"cannot read {what} {path}: {e}") from e


class _Dataset:
    """Common part: a list of ObjectRef, lazy loading, warn-or-raise on bad objects."""

    name: str
    objects: list[ObjectRef]
    strict: bool

    def _read(self, ref: ObjectRef) -> Sample:
        raise NotImplementedError

    problems: tuple = ()  # what `_bad` reported so far (a list once there is one), for reports

    def _bad(self, message: str) -> None:
        if self.strict:
            raise DataError(message)
        if "problems" not in vars(self):
            self.problems = []
        self.problems.append(message)
        warnings.warn(f"{message}; skipped", DataWarning, stacklevel=3)

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, i: int) -> Sample:
        """Load object i; a bad object raises DataError whatever `strict` is."""
        return self._read(self.objects[i])

    def load(self, i: int) -> Optional[Sample]:
        """Load object i; a bad object raises DataError (strict) or warns and gives None."""
        try:
            return self._read(self.objects[i])
        except DataError as e:
            self._bad(str(e))
            return None

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self.objects)):
            sample = self.load(i)
            if sample is not None:
                yield sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, objects={len(self.objects)})"


class FolderDataset(_Dataset):
    """`root/images/<stem>.<ext>` paired with `root/masks/<stem>.png`.

    Other layouts (`stablesam.data.layouts` finds them): `image_dir` and `mask_dir` name the two
    folders; when they are the same folder, images and masks lie side by side (`x.jpg` +
    `x.png`: the .png of a stem is its mask, any other image file its image).

    mask_mode: "threshold" (m > threshold), "nonzero" (all ids > 0 form one object),
    "instances" (one object per id > 0, named "stem#id"), "auto" (palette PNG -> "nonzero"
    with 255 as ignore unless ignore_value is given; otherwise "threshold", and a grey mask that
    holds exactly the values 0, 128 and 255 is read as a trimap: 128 is ignore, unless
    ignore_value is given). Pixels equal to ignore_value are never foreground and are returned
    as `Sample.ignore`.
    stems: optional iterable restricting the stems used (e.g. a committed split).
    """

    def __init__(
        self,
        root: PathLike,
        mask_mode: str = "auto",
        threshold: int = 127,
        ignore_value: Optional[int] = None,
        stems: Optional[Iterable[str]] = None,
        strict: bool = False,
        image_dir: Optional[PathLike] = None,
        mask_dir: Optional[PathLike] = None,
        name: Optional[str] = None,
    ) -> None:
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        self.root = Path(root)
        self.mask_mode, self.threshold, self.ignore_value = mask_mode, threshold, ignore_value
        self.strict = strict
        self.name = name or self.root.resolve().name
        image_dir = self.root / "images" if image_dir is None else Path(image_dir)
        mask_dir = self.root / "masks" if mask_dir is None else Path(mask_dir)
        if not image_dir.is_dir() or not mask_dir.is_dir():
            missing = image_dir if not image_dir.is_dir() else mask_dir
            raise DataError(f"{self.root} is not a dataset folder: {missing} is not a folder "
                            "(expected images/ and masks/, or see stablesam.data.layouts)")
        self._modes: dict[Path, tuple[str, Optional[int]]] = {}  # mask -> (mode, ignore value)
        self.objects = []
        for stem, image_path, mask_path in self._pairs(image_dir, mask_dir, stems):
            self.objects.extend(self._scan(stem, image_path, mask_path))
        if not self.objects:
            raise DataError(f"no usable image/mask pairs in {self.root}")

    def _pairs(
        self, image_dir: Path, mask_dir: Path, stems: Optional[Iterable[str]]
    ) -> list[tuple[str, Path, Path]]:
        wanted = None if stems is None else set(stems)
        side_by_side = image_dir.resolve() == mask_dir.resolve()
        image_exts = IMAGE_EXTENSIONS - {".png"} if side_by_side else IMAGE_EXTENSIONS
        images: dict[str, list[Path]] = {}
        masks: dict[str, Path] = {}
        for is_mask, folder, exts in ((False, image_dir, image_exts), (True, mask_dir, {".png"})):
            for p in sorted(folder.iterdir()):
                if p.name.startswith(".") or p.suffix.lower() not in exts or (wanted is not None and p.stem not in wanted):
                    continue
                if broken_link(p):  # a link loop or a link to a missing file: reported, not dropped
                    self._bad(broken_link(p))
                elif p.is_file() and is_mask:
                    masks[p.stem] = p
                elif p.is_file():
                    images.setdefault(p.stem, []).append(p)
        pairs = []
        for stem in sorted(images.keys() | masks.keys()):
            found = images.get(stem, [])
            if len(found) > 1:
                self._bad(f"several images for stem {stem!r}: {', '.join(sorted(p.name for p in found))}")
            elif not found:
                self._bad(f"mask {masks[stem]} has no image in {image_dir}")
            elif stem not in masks:
                self._bad(f"image {found[0]} has no mask {mask_dir / (stem + '.png')}")
            else:
                pairs.append((stem, found[0], masks[stem]))
        for stem in sorted((wanted or set()) - images.keys() - masks.keys()):
            self._bad(f"stem {stem!r} requested but neither image nor mask found in {self.root}")
        return pairs

    def _scan(self, stem: str, image_path: Path, mask_path: Path) -> list[ObjectRef]:
        try:
            image_size, _ = _header(image_path, "image")
            mask_size, mode = _header(mask_path, "mask")
            if image_size != mask_size:
                raise DataError(
                    f"mask {mask_path} has size {mask_size[1]}x{mask_size[0]} but image "
                    f"{image_path} has {image_size[1]}x{image_size[0]} (W x H)"
                )
            resolved, ignore_value = self.mask_mode, self.ignore_value
            if resolved == "auto":
                resolved = "nonzero" if mode == "P" else "threshold"
                if mode == "P" and ignore_value is None:
                    ignore_value = 255
            self._modes[mask_path] = resolved, ignore_value
            if resolved != "instances":
                return [ObjectRef(stem, image_path, mask_path)]
            m, _ = read_mask(mask_path)
            ids = [int(i) for i in np.unique(m) if i > 0 and i != self.ignore_value]
            if not ids:
                raise DataError(f"mask {mask_path} holds no instance id > 0")
            return [ObjectRef(f"{stem}#{i}", image_path, mask_path, i) for i in ids]
        except DataError as e:
            self._bad(str(e))
            return []

    def _read(self, ref: ObjectRef) -> Sample:
        assert ref.mask_path is not None
        m, _ = read_mask(ref.mask_path)
        image = read_image(ref.image_path)
        if image.shape[:2] != m.shape:
            raise DataError(
                f"mask {ref.mask_path} has size {m.shape[1]}x{m.shape[0]} but image "
                f"{ref.image_path} has {image.shape[1]}x{image.shape[0]} (W x H)"
            )
        mode, ignore_value = self._modes[ref.mask_path]
        if self.mask_mode == "auto" and ignore_value is None and mode == "threshold" and is_trimap(m):
            ignore_value = TRIMAP_IGNORE
        ignore = None if ignore_value is None else m == ignore_value
        if mode == "threshold":
            mask = m > self.threshold
        elif mode == "nonzero":
            mask = m > 0
        else:
            mask = m == ref.instance
        if ignore is not None:
            mask &= ~ignore
            if not ignore.any():
                ignore = None
        if not mask.any():
            raise DataError(f"mask {ref.mask_path} is empty for object {ref.name!r} ({mode} mode)")
        return Sample(self.name, ref.name, ref.image_path, image, mask, ignore)


def load_split(path: PathLike) -> dict[str, set[str]]:
    """A split list: one 'dataset/stem' per line ('#' comments allowed) -> {dataset: {stems}}."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}" if not path.exists() else f"{path} is not a file")
    split: dict[str, set[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        dataset, sep, stem = line.partition("/")
        if not sep or not stem:
            raise DataError(f"{path}:{n}: expected 'dataset/stem', got {line!r}")
        split.setdefault(dataset, set()).add(stem)
    return split
