"""The boxes of `stablesam annotate`, read from any of three formats recognised from the content:

- a COCO instances JSON (a dict with `images`, `annotations`, `categories`): each annotation's
  `bbox` [x, y, w, h] is a box (its `segmentation`, if any, is replaced);
- a COCO results list (what detectors write: `image_id`, `bbox`, `score`, `category_id`) with
  `--image-info`, the COCO instances file that names those images and categories;
- a folder of YOLO `.txt` files (one per image, matched by file stem; lines
  `class cx cy w h [confidence]`, normalised to the image's size), class names from a
  `classes.txt` (or `obj.names`) beside them; class k becomes COCO category k + 1.

The result is a `Job`: the output's images and categories and one `ImageTask` per image, in
input order. A box that cannot be used (NaN, an empty box, an unknown image or category id) is
reported through `Problems` (skipped and counted, or with `strict` an `InputError`).
"""

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..data.datasets import DataWarning
from ..data.images import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CLASS_FILES = ("classes.txt", "obj.names")
SHOWN_WARNINGS = 10  # bad inputs reported one by one; the rest only in the counts


class Problems:
    """Bad inputs: skipped and counted by reason (the first few also as warnings), or with
    `strict` raised at once as an InputError."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.counts: Dict[str, int] = {}

    def add(self, where: str, reason: str, detail: str = "", count: int = 1) -> None:
        """Count `reason` (a short kind: 'missing image'); `detail` only goes into the message."""
        message = f"{where}: {reason}" + (f" ({detail})" if detail else "")
        if self.strict:
            raise InputError(f"{message} (--strict)")
        if sum(self.counts.values()) < SHOWN_WARNINGS:
            warnings.warn(f"{message}; skipped", DataWarning, stacklevel=2)
        self.counts[reason] = self.counts.get(reason, 0) + count

    def merge(self, counts: Dict[str, int]) -> None:
        for reason, n in counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n

    def summary(self) -> str:
        if not self.counts:
            return "no bad input"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        return f"skipped {sum(self.counts.values())} ({parts})"


@dataclass
class ImageTask:
    """One image and its boxes: what a worker needs (JSON-able, for processes and Ray).

    boxes: [{"id", "category_id", "bbox": [x, y, w, h] in pixels, or "yolo": [cx, cy, w, h]
    normalised, optional "score"}], in input order."""

    image_id: int
    file_name: str
    path: str
    width: Optional[int] = None  # from the COCO entry (checked against the file); None: from the file
    height: Optional[int] = None
    boxes: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Job:
    """What `annotate` does: `tasks` in output order; `header` holds the output's top-level
    entries other than images and annotations (categories, info, licenses)."""

    kind: str  # "coco", "coco-results" or "yolo"
    tasks: List[ImageTask]
    categories: List[Dict[str, Any]]
    images: Optional[List[Dict[str, Any]]]  # COCO's image entries; None: built from the files (YOLO)
    header: Dict[str, Any]


def finite_box(values: Any) -> Optional[str]:
    """Why `values` is no [a, b, w, h] box of 4 finite numbers with w, h > 0, or None."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        return "bbox is not 4 numbers"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "bbox is not 4 numbers"
    if not all(math.isfinite(v) for v in values):
        return "bbox holds NaN or infinity"
    if values[2] <= 0 or values[3] <= 0:
        return "empty box (width or height <= 0)"
    return None


def read_json(path: Path, option: str) -> Any:
    if not path.is_file():
        raise InputError(f"{option} {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{option} {path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not text.strip():
        raise InputError(f"{option} {path} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{option} {path}: not JSON ({e.msg} at line {e.lineno})") from None


def coco_parts(data: Any, path: Path, option: str) -> Tuple[list, list]:
    """The images and categories of a COCO instances dict, checked."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{option} {path}: not a COCO instances file (no 'images' list)")
    images, categories = data["images"], data.get("categories") or []
    for im in images:
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise InputError(f"{option} {path}: an image entry without an integer 'id' and a 'file_name'")
    ids = [im["id"] for im in images]
    if len(set(ids)) != len(ids):
        raise InputError(f"{option} {path}: image ids repeat")
    if not isinstance(categories, list) or not all(isinstance(c, dict) and "id" in c for c in categories):
        raise InputError(f"{option} {path}: 'categories' is not a list of entries with an 'id'")
    return images, categories


def coco_tasks(images: list, annotations: list, categories: list, image_dir: Path, source: str,
               min_score: Optional[float], problems: Problems, keep_ids: bool) -> List[ImageTask]:
    """One ImageTask per COCO image entry (input order) with its valid boxes (input order)."""
    by_id = {im["id"]: ImageTask(im["id"], im["file_name"], str(image_dir / im["file_name"]),
                                 im.get("width"), im.get("height")) for im in images}
    category_ids = {c["id"] for c in categories}
    for n, ann in enumerate(annotations):
        where = f"{source} box {n}"
        if not isinstance(ann, dict):
            problems.add(where, "not a JSON object")
            continue
        task = by_id.get(ann.get("image_id"))
        problem = finite_box(ann.get("bbox"))
        score = ann.get("score")
        if problem is None and task is None:
            problem = "unknown image id"
        if problem is None and category_ids and ann.get("category_id") not in category_ids:
            problem = "unknown category id"
        if problem is None and score is not None and not (isinstance(score, (int, float)) and math.isfinite(score)):
            problem = "score is not a finite number"
        if problem:
            problems.add(f"{where} (image id {ann.get('image_id')})", problem)
            continue
        if min_score is not None and score is not None and score < min_score:
            continue
        box = {"id": ann["id"] if keep_ids and isinstance(ann.get("id"), int) else n + 1,
               "category_id": ann.get("category_id"), "bbox": [float(v) for v in ann["bbox"]]}
        if score is not None:
            box["score"] = float(score)
        task.boxes.append(box)
    return [by_id[im["id"]] for im in images]


def yolo_classes(folder: Path) -> List[str]:
    for name in CLASS_FILES:
        if (folder / name).is_file():
            return [line.strip() for line in (folder / name).read_text().splitlines() if line.strip()]
    return []


def yolo_job(folder: Path, image_dir: Path, min_score: Optional[float], problems: Problems) -> Job:
    """A folder of YOLO .txt files; the images are those of `image_dir` (sorted by name), an
    image without a .txt has no object (YOLO's rule)."""
    labels = {p.stem: p for p in sorted(folder.glob("*.txt")) if p.name not in CLASS_FILES}
    if not labels:
        raise InputError(f"--boxes {folder}: a folder without YOLO .txt files")
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    names = yolo_classes(folder)
    stems = {}
    for p in files:
        stems.setdefault(p.stem, p)
    for stem in labels:
        if stem not in stems:
            problems.add(f"--boxes {labels[stem]}", "no image of that name (unknown image)")
    tasks, n, used = [], 0, set()
    for image_id, stem in enumerate(sorted(stems), start=1):
        task = ImageTask(image_id, stems[stem].name, str(stems[stem]))
        for k, line in enumerate(read_lines(labels.get(stem), problems), start=1):
            n += 1
            parts = line.split()
            values = [to_float(v) for v in parts]
            where = f"{labels[stem]}:{k}"
            if len(parts) not in (5, 6) or None in values or values[0] != int(values[0]) or values[0] < 0:
                problems.add(where, "not a YOLO box line (class cx cy w h [confidence])")
                continue
            problem = finite_box(values[1:5])
            if problem:
                problems.add(where, problem)
                continue
            if len(values) == 6 and min_score is not None and values[5] < min_score:
                continue
            box = {"id": n, "category_id": int(values[0]) + 1, "yolo": values[1:5]}
            if len(values) == 6:
                box["score"] = values[5]
            used.add(int(values[0]))
            task.boxes.append(box)
        tasks.append(task)
    count = max([len(names), *(c + 1 for c in used)])
    categories = [{"id": c + 1, "name": names[c] if c < len(names) else str(c)} for c in range(count)]
    return Job("yolo", tasks, categories, None, {"categories": categories})


def read_lines(path: Optional[Path], problems: Problems) -> List[str]:
    if path is None:
        return []
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        problems.add(f"--boxes {path}", "unreadable label file", str(getattr(e, "strerror", None) or e))
        return []


def to_float(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def read_job(boxes: Path, image_dir: Path, image_info: Optional[Path] = None, min_score: Optional[float] = None,
             problems: Optional[Problems] = None) -> Job:
    """The Job that `--boxes` (any of the three formats, recognised from the content) names."""
    problems = problems if problems is not None else Problems()
    if not image_dir.is_dir():
        raise InputError(f"--images {image_dir}: no such folder")
    if boxes.is_dir():
        if image_info is not None:
            raise InputError("--image-info is for a COCO results list; --boxes is a YOLO folder")
        return yolo_job(boxes, image_dir, min_score, problems)
    data = read_json(boxes, "--boxes")
    if isinstance(data, list):
        if image_info is None:
            raise InputError(f"--boxes {boxes} is a COCO results list: give --image-info COCO.json, "
                             "the instances file that names its image ids")
        info = read_json(image_info, "--image-info")
        images, categories = coco_parts(info, image_info, "--image-info")
        tasks = coco_tasks(images, data, categories, image_dir, "--boxes", min_score, problems, keep_ids=False)
        header = {k: v for k, v in info.items() if k not in ("images", "annotations")}
        return Job("coco-results", tasks, categories, images, header)
    if isinstance(data, dict) and "annotations" in data:
        if image_info is not None:
            raise InputError(f"--boxes {boxes} is a COCO instances file; --image-info is only for a results list")
        images, categories = coco_parts(data, boxes, "--boxes")
        if not isinstance(data["annotations"], list):
            raise InputError(f"--boxes {boxes}: 'annotations' is not a list")
        tasks = coco_tasks(images, data["annotations"], categories, image_dir, "--boxes", min_score, problems,
                           keep_ids=True)
        header = {k: v for k, v in data.items() if k not in ("images", "annotations")}
        return Job("coco", tasks, categories, images, header)
    raise InputError(f"--boxes {boxes}: neither a COCO instances file, a COCO results list nor a YOLO folder")
