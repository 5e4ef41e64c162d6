"""Where a dataset's files are: the layouts datasets come in, and lists of datasets.

A dataset SPEC (what `--data` takes) is `[NAME=]PATH` or `[NAME=]IMAGES_DIR:MASKS_DIR`:
- `IMAGES_DIR:MASKS_DIR`: an image folder and a mask folder paired by file stem (DIS5K's
  `im:gt`, ThinObject-5K's `images_train:masks_train`, ...); the same folder twice means
  images and masks side by side;
- a folder: `images/` + `masks/` inside it; else exactly one known pair of sub-folders
  (`KNOWN_PAIRS`: `im/` + `gt/`, `images_train/` + `masks_train/`, ...); else images and masks
  side by side in it (`x.jpg` + `x.png`: the .png of a stem is its mask);
- a COCO instance `.json` (images beside it in `images/`, or `image_dir=`);
- a list file (`.txt`, one SPEC per line, `#` comments; or `.json`: a list of SPECs or of
  {"name", "images", "masks"} objects): several datasets, paths relative to the list file.
`data_root` (`--data-root`) is where a list file's relative entries live, when not beside it.
NAME overrides the dataset's name (by default the folder's name; for a pair of sub-folders or
`IMAGES_DIR:MASKS_DIR` with generic names, their parent's name), which is what split files and
reports use.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from .coco import CocoDataset
from .datasets import IMAGE_EXTENSIONS, DataError, FolderDataset, PathLike

# (image folder, mask folder) names of published datasets, tried in this order.
KNOWN_PAIRS = (
    ("images", "masks"), ("im", "gt"), ("img", "gt"), ("imgs", "gt"), ("images", "gt"),
    ("image", "mask"), ("images_train", "masks_train"), ("images_test", "masks_test"),
    ("images", "masks_max255"), ("JPEGImages", "Annotations"), ("JPEGImages", "SegmentationObject"),
)
GENERIC_NAMES = {name for pair in KNOWN_PAIRS for name in pair}
LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class DatasetSource:
    """One dataset's files: an image folder + a mask folder (possibly the same), or a COCO JSON."""

    name: str
    images: Path
    masks: Optional[Path] = None  # None for COCO
    coco: Optional[Path] = None

    def open(self, **options) -> Union[FolderDataset, CocoDataset]:
        """The dataset; options go to FolderDataset (mask rules, stems, strict) or CocoDataset."""
        if self.coco is not None:
            options.pop("mask_mode", None), options.pop("threshold", None), options.pop("ignore_value", None)
            options.pop("stems", None)
            return CocoDataset(self.coco, self.images, **options)
        for key in ("min_area", "image_dir"):
            options.pop(key, None)
        return FolderDataset(self.images, image_dir=self.images, mask_dir=self.masks, name=self.name, **options)


def _name(images: Path, masks: Path) -> str:
    """A dataset name for an image/mask folder pair: the image folder's own name, or its parent's
    when the folder names are generic (im, gt, images_train, ...)."""
    if images.name in GENERIC_NAMES or masks.name in GENERIC_NAMES:
        parents = {images.resolve().parent, masks.resolve().parent}
        if len(parents) == 1:
            return parents.pop().name
    return images.resolve().name


def _has_side_by_side(folder: Path) -> bool:
    stems_png = {p.stem for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS - {".png"} and p.stem in stems_png
               for p in folder.iterdir())


def find_layout(folder: Path, name: Optional[str] = None) -> DatasetSource:
    """The dataset in a folder (see the module docstring); DataError if none or ambiguous."""
    present = [(i, m) for i, m in KNOWN_PAIRS if (folder / i).is_dir() and (folder / m).is_dir()]
    if present[:1] == [("images", "masks")]:
        present = present[:1]
    if len(present) > 1:
        listed = ", ".join(f"{i}/ + {m}/" for i, m in present)
        raise DataError(f"{folder} holds several image/mask folder pairs ({listed}): name one as "
                        f"IMAGES_DIR:MASKS_DIR, e.g. {folder / present[0][0]}:{folder / present[0][1]}")
    if present:
        images, masks = folder / present[0][0], folder / present[0][1]
        return DatasetSource(name or folder.resolve().name, images, masks)
    if _has_side_by_side(folder):
        return DatasetSource(name or folder.resolve().name, folder, folder)
    raise DataError(f"cannot open dataset {folder}: expected images/ + masks/ (or another image/mask folder pair "
                    f"such as im/ + gt/), images and .png masks side by side, or IMAGES_DIR:MASKS_DIR")


def _is_coco(path: Path) -> bool:
    try:
        head = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    return isinstance(head, dict) and "annotations" in head


def parse_spec(spec: Union[str, dict], base: Optional[Path] = None, image_dir: Optional[PathLike] = None,
               data_root: Optional[PathLike] = None, _seen: tuple = ()) -> List[DatasetSource]:
    """A dataset SPEC (or a list-file entry) -> its sources.

    Relative paths resolve against `base` (a list file's folder for its entries; the current
    folder at the top). With `data_root`, a list file's entries resolve against it instead, and a
    top-level SPEC not found from the current folder is looked for under it: a list of datasets
    kept with the code (docs/datasets/) then reads data that lives elsewhere.
    """
    def where(p: str) -> Path:
        q = Path(p).expanduser()
        if q.is_absolute():
            return q
        if base is None and data_root is not None and not q.exists() and (Path(data_root) / q).exists():
            return Path(data_root) / q
        return q if base is None else base / q

    if isinstance(spec, dict):
        if "images" not in spec:
            raise DataError(f"dataset entry {spec} needs 'images' (and 'masks')")
        images, masks = where(spec["images"]), where(spec.get("masks", spec["images"]))
        return [_pair(images, masks, spec.get("name"))]
    text = str(spec).strip()
    name = None
    head, eq, rest = text.partition("=")
    if eq and "/" not in head and "\\" not in head and head:
        name, text = head, rest
    path = where(text)
    if not path.exists() and ":" in text:
        left, _, right = text.rpartition(":")
        if where(left).is_dir():
            return [_pair(where(left), where(right), name)]
    if not path.exists():
        raise DataError(f"dataset {text}: no such file or folder")
    if path.is_dir():
        return [find_layout(path, name)]
    suffix = path.suffix.lower()
    if suffix == ".json" and _is_coco(path):
        folder = Path(image_dir) if image_dir else (path.parent / "images" if (path.parent / "images").is_dir()
                                                    else path.parent)
        return [DatasetSource(name or path.stem, folder, None, path)]
    if suffix in LIST_SUFFIXES or suffix == ".json":
        return _read_list(path, image_dir, data_root, _seen)
    raise DataError(f"cannot open dataset {path}: expected a folder, IMAGES_DIR:MASKS_DIR, a COCO .json "
                    "or a list file (.txt / .json)")


def _pair(images: Path, masks: Path, name: Optional[str]) -> DatasetSource:
    for folder, what in ((images, "image"), (masks, "mask")):
        if not folder.is_dir():
            raise DataError(f"{what} folder {folder} does not exist")
    return DatasetSource(name or _name(images, masks), images, masks)


def _read_list(path: Path, image_dir: Optional[PathLike], data_root: Optional[PathLike],
               seen: tuple) -> List[DatasetSource]:
    if path.resolve() in seen:
        raise DataError(f"list file {path} includes itself")
    seen = seen + (path.resolve(),)
    if path.suffix.lower() == ".json":
        entries = json.loads(path.read_text())
        if isinstance(entries, dict):
            entries = entries.get("datasets")
        if not isinstance(entries, list):
            raise DataError(f"{path}: expected a JSON list of datasets (or {{\"datasets\": [...]}})")
    else:
        entries = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        entries = [e for e in entries if e]
    if not entries:
        raise DataError(f"list file {path} names no dataset")
    sources = []
    for entry in entries:
        base = Path(data_root) if data_root is not None else path.parent
        sources.extend(parse_spec(entry, base, image_dir, data_root, seen))
    names = [s.name for s in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"list file {path} gives several datasets the name {twice[0]!r}: prefix entries with NAME=")
    return sources


def open_dataset(path: PathLike, **options) -> Union[FolderDataset, CocoDataset]:
    """One dataset from a SPEC (folder of any known layout, IMAGES_DIR:MASKS_DIR, COCO JSON).

    Options go to the dataset class (COCO's `image_dir` defaults to `images/` beside the JSON)."""
    sources = parse_spec(str(path), image_dir=options.get("image_dir"))
    if len(sources) != 1:
        raise DataError(f"{path} lists {len(sources)} datasets; open them with open_datasets")
    return sources[0].open(**options)


def open_datasets(spec: PathLike, data_root: Optional[PathLike] = None,
                  **options) -> List[Union[FolderDataset, CocoDataset]]:
    """Every dataset a SPEC names (a list file names several); see parse_spec for data_root."""
    sources = parse_spec(str(spec), image_dir=options.get("image_dir"), data_root=data_root)
    return [s.open(**dict(options)) for s in sources]
