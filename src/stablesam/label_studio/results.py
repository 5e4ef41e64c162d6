"""Masks -> Label Studio results: BrushLabels (Label Studio's RLE, encoded by label-studio-sdk)
and PolygonLabels (the mask's outer contours in percent of the image)."""

import uuid
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from .config import OutputTag

POLYGON_TOLERANCE = 0.002  # simplification: this fraction of a contour's perimeter (at least 1 px)
MIN_POLYGON_AREA = 4.0  # px; smaller islands get no polygon


def region_id() -> str:
    return uuid.uuid4().hex[:10]


def base_result(tag: OutputTag, size: Tuple[int, int], score: float) -> Dict[str, Any]:
    width, height = size
    return {"id": region_id(), "from_name": tag.name, "to_name": tag.to_name, "type": tag.type,
            "original_width": width, "original_height": height, "image_rotation": 0,
            "score": round(float(score), 4), "readonly": False}


def brush_result(mask: np.ndarray, tag: OutputTag, label: Optional[str], score: float) -> Dict[str, Any]:
    """A BrushLabels result for an (H, W) bool mask."""
    from label_studio_sdk.converter.brush import mask2rle

    result = base_result(tag, (mask.shape[1], mask.shape[0]), score)
    rle = mask2rle(mask.astype(np.uint8) * 255)
    result["value"] = {"format": "rle", "rle": [int(v) for v in rle], "brushlabels": [label] if label else []}
    return result


def polygons(mask: np.ndarray) -> List[np.ndarray]:
    """The outer contours of a mask as (k, 2) pixel polygons, simplified, largest first."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True):
        if cv2.contourArea(c) < MIN_POLYGON_AREA:
            continue
        eps = max(1.0, POLYGON_TOLERANCE * cv2.arcLength(c, True))
        poly = cv2.approxPolyDP(c, eps, True).reshape(-1, 2)
        if len(poly) >= 3:
            out.append(poly)
    return out


def polygon_results(mask: np.ndarray, tag: OutputTag, label: Optional[str], score: float) -> List[Dict[str, Any]]:
    """One PolygonLabels result per outer contour of an (H, W) bool mask (pixel centres, in percent)."""
    h, w = mask.shape
    results = []
    for poly in polygons(mask):
        result = base_result(tag, (w, h), score)
        points = [[round((x + 0.5) * 100 / w, 4), round((y + 0.5) * 100 / h, 4)] for x, y in poly.tolist()]
        result["value"] = {"points": points, "closed": True, "polygonlabels": [label] if label else []}
        results.append(result)
    return results


def mask_results(mask: np.ndarray, tags: List[OutputTag], label: Optional[str], score: float) -> List[Dict[str, Any]]:
    """The results for one mask: one per BrushLabels tag, the polygons per PolygonLabels tag."""
    results: List[Dict[str, Any]] = []
    for tag in tags:
        if tag.type == "brushlabels":
            results.append(brush_result(mask, tag, label, score))
        else:
            results.extend(polygon_results(mask, tag, label, score))
    return results
