"""One image's boxes to masks: what every engine (one process, N processes, Ray actors) runs.

An `Annotator` holds one model. `annotate(task)` loads the image, checks each box against it,
decodes the image's boxes in batched decoder calls (`predict_batch`) and returns a small,
JSON-able result: per box a COCO annotation (RLE `segmentation`, `area`, the mask's `bbox`, the
input box, `predicted_iou`, `stability_score`, routing α), plus the problems found, and the
instance-id PNG when asked. Masks never leave this function as arrays.
"""

import io
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from ..data.images import InputError, load_image

BOX_TOLERANCE = 1.0  # px a box may reach past the image's edge (rounding of detectors' boxes); clipped
LOGIT_BYTES = 200_000_000  # high-res logits held at once per image (boxes decoded in chunks under it)
MAX_CHUNK = 16  # boxes per predict_batch call
DIGITS = 4  # decimals of the scores in the output


def image_size(path: str) -> Tuple[int, int]:
    """(H, W) of the stored pixels from the header (no decoding), or InputError."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return h, w


def to_xyxy(box: Dict[str, Any], size: Tuple[int, int]) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """A task box -> (x0, y0, x1, y1) in pixels of an image of size (H, W), clipped to the image,
    or (None, why it is no box for this image)."""
    h, w = size
    if "yolo" in box:
        cx, cy, bw, bh = box["yolo"]
        xyxy = np.array([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
    else:
        x, y, bw, bh = box["bbox"]
        xyxy = np.array([x, y, x + bw, y + bh], float)
    t = BOX_TOLERANCE
    if xyxy[0] < -t or xyxy[1] < -t or xyxy[2] > w + t or xyxy[3] > h + t:
        return None, "box outside the image"
    xyxy = np.clip(xyxy, 0, [w, h, w, h])
    if xyxy[2] - xyxy[0] <= 0 or xyxy[3] - xyxy[1] <= 0:
        return None, "empty box (width or height <= 0)"
    return xyxy, None


def check_task(task: Dict[str, Any], size: Tuple[int, int]) -> Tuple[List[Tuple[Dict, np.ndarray]], List[List[str]]]:
    """The task's boxes that fit an image of size (H, W), as (box, xyxy), and the problems
    [[where, reason(, detail)], ...] (a size that differs from the COCO entry rules out every box)."""
    h, w = size
    where = f"image {task['file_name']}"
    if task.get("width") is not None and (task["width"], task["height"]) != (w, h):
        return [], [[where, "image size differs from its COCO entry",
                      f"{w}x{h}, the entry says {task['width']}x{task['height']}"]]
    good, problems = [], []
    for box in task["boxes"]:
        xyxy, problem = to_xyxy(box, size)
        if problem:
            problems.append([f"{where} box id {box['id']}", problem])
        else:
            good.append((box, xyxy))
    return good, problems


def stability_scores(logits: np.ndarray, threshold: float, offset: float = 1.0) -> np.ndarray:
    """SAM's stability score per mask: IoU of the masks at threshold ± offset; (n, H, W) -> (n,)."""
    high = (logits > threshold + offset).sum(axis=(1, 2))
    low = (logits > threshold - offset).sum(axis=(1, 2))
    return np.where(low > 0, high / np.maximum(low, 1), 0.0)


def instance_png(masks: List[np.ndarray], size: Tuple[int, int]) -> bytes:
    """PNG of instance ids: pixel k = the image's k-th annotation (1-based), 0 = none; larger
    masks are painted first, so a small object on a large one stays visible."""
    ids = np.zeros(size, np.uint16 if len(masks) > 255 else np.uint8)
    for k in sorted(range(len(masks)), key=lambda i: -int(masks[i].sum())):
        ids[masks[k]] = k + 1
    buf = io.BytesIO()
    Image.fromarray(ids).save(buf, format="PNG")
    return buf.getvalue()


def mask_threshold(predictor) -> float:
    """The logit threshold of the predictor's masks (0.0 in every SAM family)."""
    model = getattr(predictor, "model", None)
    return float(getattr(predictor, "mask_threshold", getattr(model, "mask_threshold", 0.0)))


class Annotator:
    """One model and its predictor; `annotate(task)` for each image."""

    def __init__(self, model_spec: str, device: Optional[str] = None, with_png: bool = False) -> None:
        from ..backends.predictor import StableSamPredictor
        from ..models.spec import build_sam_for

        _, self.model = build_sam_for("annotate", model_spec, device)
        self.model.eval()
        self.predictor = StableSamPredictor(self.model)
        self.with_png = with_png
        self.threshold = mask_threshold(self.predictor)

    def annotate(self, task: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[bytes]]:
        """task (`ImageTask.to_dict()`) -> ({"image_id", "file_name", "width", "height",
        "annotations", "problems"}, instance-id PNG bytes or None)."""
        result = {"image_id": task["image_id"], "file_name": task["file_name"], "width": None, "height": None,
                  "annotations": [], "problems": []}
        try:
            image = load_image(task["path"], exif=False)
        except (InputError, OSError) as e:
            reason = "unreadable image" if os.path.exists(task["path"]) else "missing image"
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            result["problems"] = [[f"image {task['file_name']}", reason, detail]]
            return result, None
        size = image.shape[:2]
        result["height"], result["width"] = size
        good, result["problems"] = check_task(task, size)
        masks = self.segment(image, good, task["image_id"], result["annotations"])
        png = instance_png(masks, size) if self.with_png else None
        return result, png

    def segment(self, image: np.ndarray, good: List[Tuple[Dict, np.ndarray]], image_id: int,
                out: List[Dict]) -> List[np.ndarray]:
        """Decode the boxes of `good` on `image`, append their annotations to `out`; returns the
        masks when the PNG is wanted (else an empty list: masks are dropped chunk by chunk)."""
        from pycocotools import mask as mask_utils

        if not good:
            return []
        h, w = image.shape[:2]
        kept: List[np.ndarray] = []
        decoded = decode_boxes(self.predictor, image, np.stack([xyxy for _, xyxy in good]), self.threshold)
        for rows, masks, iou, stability, alpha in decoded:
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
            areas, bboxes = mask_utils.area(rles), mask_utils.toBbox(rles)
            for j, (box, xyxy) in enumerate(good[rows]):
                x0, y0, x1, y1 = (float(v) for v in xyxy)
                ann = {"id": box["id"], "image_id": image_id, "category_id": box["category_id"],
                       "segmentation": {"size": [h, w], "counts": rles[j]["counts"].decode("ascii")},
                       "area": int(areas[j]), "bbox": [int(round(v)) for v in bboxes[j]], "iscrowd": 0,
                       "input_bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]}
                if "score" in box:
                    ann["score"] = box["score"]
                out.append({**ann, **scores_of(iou[j], stability[j], None if alpha is None else alpha[j])})
            if self.with_png:
                kept.extend(masks)
        return kept


def scores_of(iou: float, stability: float, alpha: Optional[np.ndarray]) -> Dict[str, Any]:
    """The per-object scores of the output, rounded to DIGITS decimals."""
    return {"predicted_iou": round(float(iou), DIGITS), "stability_score": round(float(stability), DIGITS),
            "routing_alpha": None if alpha is None else [round(float(a), DIGITS) for a in alpha]}


def decode_boxes(predictor, image: np.ndarray, boxes: np.ndarray, threshold: float = 0.0) -> Iterator[tuple]:
    """All boxes (n, 4) XYXY of one image through the model, in batched decoder calls of a few
    boxes at a time (bounded memory). Yields (rows slice, masks (k, H, W) bool, predicted IoU
    (k,), stability score (k,), routing α (k, 2) or None with the plugins off)."""
    h, w = image.shape[:2]
    predictor.set_image(image)
    chunk = int(max(1, min(MAX_CHUNK, LOGIT_BYTES // (4 * h * w))))
    for i in range(0, len(boxes), chunk):
        logits, scores, _ = predictor.predict_batch(boxes=boxes[i : i + chunk], multimask_output=False,
                                                    return_logits=True)
        logits = np.asarray(logits)[:, 0]
        alpha = predictor.routing["alpha"]
        rows = slice(i, i + len(logits))
        yield rows, logits > threshold, scores[:, 0], stability_scores(logits, threshold), alpha
