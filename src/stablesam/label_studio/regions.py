"""Label Studio regions -> SAM prompts.

Label Studio gives coordinates in percent of the image (`x`, `y`, `width`, `height` of a
RectangleLabels region, `x`, `y` of a KeyPointLabels one); they become pixels of the image the
model sees (EXIF orientation applied, as the browser shows it). Clicks are negative when their
label is the negative label (default "Background") or when Label Studio marks them so
(`is_positive: false`, an Alt-click with a smart tool); all others are positive.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..data.images import InputError
from ..demo.engine import number
from ..limits import SERVER_CLICKS
from ..prompts.checks import box_problem

BOX_TYPES = ("rectanglelabels", "rectangle")
CLICK_TYPES = ("keypointlabels", "keypoint")
MAX_CLICKS = SERVER_CLICKS  # per prompt (stablesam.limits)


@dataclass
class RegionPrompt:
    """One SAM prompt in percent of the image: a box (x0, y0, x1, y1) and/or clicks (x, y, label)."""

    to_name: Optional[str]
    label: Optional[str]
    box: Optional[Tuple[float, float, float, float]] = None
    clicks: List[Tuple[float, float, int]] = field(default_factory=list)
    size: Optional[Tuple[int, int]] = None  # (original_width, original_height) Label Studio reported

    def pixels(self, width: int, height: int) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
        """(box (4,) XYXY or None, points (k, 2), labels (k,)) in pixels of a width x height image;
        a box reaching the image's edge is clipped to the last pixel."""
        box = None
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            box = np.array([x0 * width / 100, y0 * height / 100, x1 * width / 100, y1 * height / 100])
            box = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1])
            problem = box_problem(box, (height, width))
            if problem:
                raise InputError(f"box x={x0:g}% y={y0:g}% to {x1:g}%, {y1:g}%: {problem}")
        points = np.array([[x * width / 100, y * height / 100] for x, y, _ in self.clicks], float).reshape(-1, 2)
        points = np.clip(points, 0, [width - 1, height - 1])
        labels = np.array([lab for _, _, lab in self.clicks], np.int64)
        return box, points, labels


def region_label(region: Dict[str, Any], kind: str) -> Optional[str]:
    """The label the user chose for a region (`value.<type>` or a smart tool's `value.labels`)."""
    value = region["value"]
    for key in (kind, "labels"):
        labels = value.get(key)
        if isinstance(labels, list) and labels and isinstance(labels[0], str):
            return labels[0]
    return None


def percent(value: Dict[str, Any], key: str, where: str) -> float:
    v = number(value.get(key), f"{where}: value.{key}")
    if not -1 <= v <= 101:
        raise InputError(f"{where}: value.{key} = {v:g} is not a percentage of the image")
    return v


def checked_region(region: Any, where: str) -> Tuple[str, Dict[str, Any]]:
    """(type, value) of a region dict, or InputError."""
    if not isinstance(region, dict) or not isinstance(region.get("value"), dict):
        raise InputError(f"{where} must be an object with a 'value' object")
    kind = region.get("type")
    if not isinstance(kind, str):
        raise InputError(f"{where} has no 'type'")
    rotation = region.get("image_rotation", 0)
    if rotation not in (0, None) and number(rotation, f"{where}: image_rotation") % 360:
        raise InputError(f"{where}: the image is shown rotated by {rotation}°; turn the image back to 0°")
    return kind.lower(), region["value"]


def box_of(region: Dict[str, Any], value: Dict[str, Any], where: str) -> Tuple[float, float, float, float]:
    rotation = number(value.get("rotation", 0) or 0, f"{where}: value.rotation")
    if rotation % 360:
        raise InputError(f"{where}: a rotated box ({rotation:g}°) is not a SAM prompt; draw it unrotated")
    x, y = percent(value, "x", where), percent(value, "y", where)
    w, h = percent(value, "width", where), percent(value, "height", where)
    return x, y, x + w, y + h


def original_size(region: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    w, h = region.get("original_width"), region.get("original_height")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1_000_000 for v in (w, h))
    return (w, h) if ok else None


def context_prompts(result: Any, negative_label: str) -> List[RegionPrompt]:
    """`params.context.result` of an interactive request -> prompts.

    Clicks (with at most one box) form one prompt; boxes without clicks give one prompt each.
    """
    if not isinstance(result, list) or not result:
        raise InputError("context.result must be a non-empty list of regions")
    boxes, clicks, labels, to_names, size = [], [], [], set(), None
    for i, region in enumerate(result):
        where = f"context.result[{i}]"
        kind, value = checked_region(region, where)
        to_names.add(region.get("to_name"))
        size = size or original_size(region)
        label = region_label(region, kind)
        if kind in BOX_TYPES:
            boxes.append((box_of(region, value, where), label))
        elif kind in CLICK_TYPES:
            negative = label == negative_label or region.get("is_positive") is False
            clicks.append((percent(value, "x", where), percent(value, "y", where), 0 if negative else 1))
            if not negative:
                labels.append(label)
        else:
            raise InputError(f"{where}: region type {kind!r} is not a prompt; use RectangleLabels or KeyPointLabels")
    if len(to_names) > 1:
        raise InputError("context.result mixes regions of several images (to_name)")
    to_name = to_names.pop()
    to_name = to_name if isinstance(to_name, str) else None
    if len(clicks) > MAX_CLICKS:
        raise InputError(f"at most {MAX_CLICKS} clicks per prompt, got {len(clicks)}")
    if not clicks:
        return [RegionPrompt(to_name, label, box, [], size) for box, label in boxes]
    if len(boxes) > 1:
        raise InputError("clicks go with at most one box; got several boxes")
    if not boxes and not labels:
        raise InputError("only background clicks: add a box or a foreground click")
    label = next((lab for lab in labels if lab), boxes[0][1] if boxes else None)
    return [RegionPrompt(to_name, label, boxes[0][0] if boxes else None, clicks, size)]


def task_boxes(task: Dict[str, Any], where: str) -> List[RegionPrompt]:
    """The rectangles a task already holds (its annotations' and predictions' results, a
    detector's boxes for instance) -> one box prompt each, duplicates once."""
    prompts, seen = [], set()
    for source in ("annotations", "predictions"):
        items = task.get(source) or []
        if not isinstance(items, list):
            raise InputError(f"{where}.{source} must be a list")
        for j, item in enumerate(items):
            if not isinstance(item, dict) or item.get("was_cancelled"):
                continue
            result = item.get("result") or []
            if not isinstance(result, list):
                raise InputError(f"{where}.{source}[{j}].result must be a list")
            for k, region in enumerate(result):
                if not isinstance(region, dict) or str(region.get("type", "")).lower() not in BOX_TYPES:
                    continue
                rwhere = f"{where}.{source}[{j}].result[{k}]"
                kind, value = checked_region(region, rwhere)
                box, label = box_of(region, value, rwhere), region_label(region, kind)
                to_name = region.get("to_name") if isinstance(region.get("to_name"), str) else None
                key = (to_name, label, tuple(round(v, 4) for v in box))
                if key not in seen:
                    seen.add(key)
                    prompts.append(RegionPrompt(to_name, label, box, [], original_size(region)))
    return prompts
