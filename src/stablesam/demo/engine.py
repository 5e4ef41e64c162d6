"""The demo's model work: one StableSam run as plain SAM and as Stable-SAM on one embedding.

All model use goes through `DemoEngine`, serialised by one lock: the wrapper keeps per-call
state (`plugins_enabled`, `last_alpha`, the predictor's current embedding).
"""

import base64
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from ..backends.predictor import StableSamPredictor
from ..data.images import InputError
from ..evaluation.metrics import stability
from ..modeling import StableSam
from ..models.cache import Embedding, encode_image
from ..prompts.checks import box_problem, point_inside
from ..prompts.generation import noisy_boxes, noisy_points, object_rng
from .session import ImageStore, StoredImage, decode_upload, image_id, to_jpeg

MAX_POINTS = 32
MAX_WOBBLE = 64
ARROWS_PER_SIDE = 16  # offsets are drawn every grid // 16 cells (every 2nd for a 32 x 32 grid)
MAX_STAGES = 256  # cached low-res logits of earlier clicks (256 x 256 floats each for SAM: 64 MB at most)
WOBBLE_PIXELS = 1_000_000  # wobble masks are made at most this big (K full-size masks of a photo are GBs)


@dataclass
class Prompt:
    """One prompt in original-image pixels: box (4,) XYXY or None; clicks (k, 2) with labels (k,)."""

    box: Optional[np.ndarray]
    points: np.ndarray
    labels: np.ndarray

    def batch(self) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
        """As predict_batch arguments for N = 1: boxes (1, 4), point_coords (1, k, 2), labels (1, k)."""
        if not len(self.points):
            return self.box[None], None, None
        return (None if self.box is None else self.box[None]), self.points[None], self.labels[None]


def number(value: Any, what: str) -> float:
    """A JSON number as a finite float, or InputError (booleans, strings, NaN, inf and integers
    too large for a float are not numbers here)."""
    try:
        result = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # a 400-digit integer
        result = math.inf
    if not math.isfinite(result):
        raise InputError(f"{what} must be a finite number, got {str(value)[:40]!r}")
    return result


def parse_prompt(obj: Dict[str, Any], width: int, height: int) -> Prompt:
    """{"box": [x0, y0, x1, y1] | null, "points": [[x, y, label], ...]} -> Prompt, or InputError."""
    raw_box, raw_points = obj.get("box"), obj.get("points") or []
    inside = f"the {width}x{height} image (x in 0..{width - 1}, y in 0..{height - 1})"
    box = None
    if raw_box is not None:
        if not isinstance(raw_box, list) or len(raw_box) != 4:
            raise InputError("box must be [x0, y0, x1, y1]")
        box = np.array([number(v, "box coordinate") for v in raw_box])
        problem = box_problem(box, (height, width))
        if problem:
            raise InputError(f"box {','.join(f'{v:g}' for v in box)}: {problem}")
    if not isinstance(raw_points, list) or len(raw_points) > MAX_POINTS:
        raise InputError(f"points must be a list of at most {MAX_POINTS} [x, y, label]")
    points, labels = [], []
    for p in raw_points:
        if not isinstance(p, list) or len(p) != 3 or p[2] not in (0, 1) or isinstance(p[2], bool):
            raise InputError("each click must be [x, y, label] with label 1 (foreground) or 0 (background)")
        x, y = number(p[0], "click x"), number(p[1], "click y")
        if not point_inside(x, y, (height, width)):
            raise InputError(f"click {x:g},{y:g} is outside {inside}")
        points.append((x, y))
        labels.append(int(p[2]))
    if box is None and not points:
        raise InputError("no prompt: draw a box or place a click")
    return Prompt(box, np.array(points, float).reshape(-1, 2), np.array(labels, np.int64))


def wobble_prompts(prompt: Prompt, k: int, scale: float, rng: np.random.Generator,
                   size: Tuple[int, int]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """K noisy versions of a prompt: boxes (K, 4), point_coords (K, n, 2), labels (K, n).

    The box gets the benchmark's HQ-SAM noise at scale s (`noisy_boxes`). Each click moves by
    U(-1, 1) * s * L / 2 along x and y, L = the box's (width, height) when there is a box, else
    half the image's shorter side (as if the object were that big), then is clipped to the image.
    """
    h, w = size
    boxes = coords = labels = None
    if prompt.box is not None:
        boxes = noisy_boxes(prompt.box, scale, k, rng, size)
    if len(prompt.points):
        if prompt.box is not None:
            extent = np.array([prompt.box[2] - prompt.box[0], prompt.box[3] - prompt.box[1]])
        else:
            extent = np.full(2, min(h, w) / 2)
        coords = noisy_points(prompt.points, scale, extent, k, rng, size)
        labels = np.broadcast_to(prompt.labels, (k, len(prompt.points))).copy()
    return boxes, coords, labels


def png_data_url(gray: np.ndarray) -> str:
    """(H, W) uint8 -> 'data:image/png;base64,...' (grayscale PNG)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(gray), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    assert ok
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def offset_arrows(offsets: np.ndarray, embedding: Embedding, img_size: int) -> Dict[str, Any]:
    """Δp (h, w, 2) in embedding cells -> arrows [x, y, dx, dy] in original-image pixels.

    One cell is img_size / w pixels of the resized (longest side = img_size) image; cells over
    the padding are dropped; every `stride`-th cell is kept."""
    gh, gw = offsets.shape[:2]
    in_h, in_w = embedding.input_size
    h, w = embedding.original_size
    stride = max(1, gw // ARROWS_PER_SIDE)
    cell = img_size / gw
    sx, sy = w / in_w, h / in_h  # resized -> original pixels
    arrows = []
    for i in range(stride // 2, gh, stride):
        for j in range(stride // 2, gw, stride):
            cx, cy = (j + 0.5) * cell, (i + 0.5) * cell
            if cx >= in_w or cy >= in_h:
                continue
            dx, dy = offsets[i, j]
            arrows.append([round(cx * sx, 1), round(cy * sy, 1),
                           round(float(dx) * cell * sx, 2), round(float(dy) * cell * sy, 2)])
    return {"stride": stride, "cell_px": round(cell * sx, 2), "arrows": arrows,
            "mean_cells": round(float(np.abs(offsets).mean()), 4)}


class DemoEngine:
    """Images in, masks out; the embedding is computed once per image (kept in `store`)."""

    def __init__(self, model: StableSam, store: Optional[ImageStore] = None):
        if not isinstance(model, StableSam) or not model.plugins_enabled:
            raise ValueError("the demo compares SAM with Stable-SAM: it needs a model with a plugin "
                             "(tiny-stable-sam or SPEC+plugin=PATH)")
        self.model = model.eval()
        self.predictor = StableSamPredictor(model)
        self.store = store if store is not None else ImageStore()
        self.lock = threading.Lock()
        self.stages: "OrderedDict[tuple, np.ndarray]" = OrderedDict()  # low-res logits of prompts so far

    @property
    def grid(self) -> Tuple[int, int]:
        return tuple(self.model.backend.embedding_size(self.model.sam))

    def add_image(self, data: bytes, name: str, max_bytes: int, max_pixels: int) -> Tuple[StoredImage, float]:
        """Decode and encode an upload (or find it stored) -> (image, encoder ms; 0 when stored)."""
        key = image_id(data)
        item = self.store.get(key)
        if item is not None:
            return item, 0.0
        rgb = decode_upload(data, max_bytes, max_pixels)
        jpeg = to_jpeg(rgb)
        with self.lock:
            item = self.store.get(key)  # a concurrent upload of the same bytes may have won
            if item is not None:
                return item, 0.0
            start = time.perf_counter()
            embedding = encode_image(self.model.sam, rgb)
            ms = (time.perf_counter() - start) * 1000
        item = StoredImage(key, name, rgb.shape[1], rgb.shape[0], embedding, jpeg)
        self.store.put(item)
        return item, ms

    def _decode(self, embedding: Embedding, boxes, coords, labels, plugins: bool, multimask: bool = False):
        """N prompts through one model -> masks (N, H, W) bool, scores (N,), routing; under the lock."""
        self.predictor.set_embedding(embedding)
        self.model.plugins_enabled = plugins
        try:
            masks, scores, _ = self.predictor.predict_batch(boxes, coords, labels, multimask_output=multimask)
            routing = self.predictor.routing
        finally:
            self.model.plugins_enabled = True
        best = scores.argmax(axis=1)
        rows = np.arange(len(masks))
        return masks[rows, best], scores[rows, best], routing, best

    def _decode_clicks(self, item: StoredImage, prompt: Prompt, plugins: bool, multimask: bool):
        """SAM's interactive decoding of one prompt, as SAM's own demo does it: the box (or else
        the first click) alone, then each further click with the previous stage's low-res logits
        as mask_input. Earlier stages come from `stages` (keyed by image, model and the prompt so
        far), so a new click costs one decoder pass; the result depends on the prompt alone.
        Returns (mask (H, W) bool, score, routing, choice); under the lock."""
        self.predictor.set_embedding(item.embedding)
        self.model.plugins_enabled = plugins
        first = 0 if prompt.box is not None else 1
        prev = None
        try:
            for j in range(first, len(prompt.points) + 1):
                key = (item.id, plugins, multimask, None if prompt.box is None else prompt.box.tobytes(),
                       prompt.points[:j].tobytes(), prompt.labels[:j].tobytes())
                last = j == len(prompt.points)
                if not last and key in self.stages:
                    prev = self.stages[key]
                    self.stages.move_to_end(key)
                    continue
                multi = multimask and j == first
                masks, scores, logits = self.predictor.predict(
                    point_coords=prompt.points[:j] if j else None, point_labels=prompt.labels[:j] if j else None,
                    box=prompt.box, mask_input=prev, multimask_output=multi)
                best = int(np.argmax(scores))
                prev = logits[best:best + 1]
                self.stages[key] = prev
                while len(self.stages) > MAX_STAGES:
                    self.stages.popitem(last=False)
            return masks[best], float(scores[best]), self.predictor.routing, best
        finally:
            self.model.plugins_enabled = True

    def _both(self, embedding: Embedding, boxes, coords, labels, multimask: bool = False):
        """The same N prompts through plain SAM and Stable-SAM -> ({"sam": ..., "stable_sam": ...}
        of `_decode` results, decoder ms)."""
        with self.lock:
            start = time.perf_counter()
            results = {key: self._decode(embedding, boxes, coords, labels, plugins, multimask)
                       for key, plugins in (("sam", False), ("stable_sam", True))}
            return results, (time.perf_counter() - start) * 1000

    def predict(self, item: StoredImage, prompt: Prompt, multimask: bool = False) -> Dict[str, Any]:
        """Both models on one prompt: masks as 0/255 PNG data URLs, predicted IoU, α, Δp arrows.
        Clicks are corrections: each is decoded with the mask before it (`_decode_clicks`)."""
        out: Dict[str, Any] = {}
        with self.lock:
            start = time.perf_counter()
            results = {key: self._decode_clicks(item, prompt, plugins, multimask)
                       for key, plugins in (("sam", False), ("stable_sam", True))}
            decoder_ms = (time.perf_counter() - start) * 1000
        for key, (mask, score, _, best) in results.items():
            out[key] = {"iou": round(score, 4), "choice": best, "mask": png_data_url(mask.astype(np.uint8) * 255)}
        routing = results["stable_sam"][2]
        out["stable_sam"]["alpha"] = [round(float(a), 4) for a in routing["alpha"][0]]
        out["stable_sam"]["offsets"] = offset_arrows(routing["offsets"][0], item.embedding,
                                                     self.model.backend.image_size(self.model.sam))
        out["decoder_ms"] = round(decoder_ms, 1)
        return out

    def wobble(self, item: StoredImage, prompt: Prompt, k: int, scale: float, seed: int) -> Dict[str, Any]:
        """K seeded noisy versions of the prompt through both models: agreement heat maps
        (grayscale PNG, value = round(255 * masks covering the pixel / K)) and stability (mean
        pairwise IoU of the K masks).

        Images over WOBBLE_PIXELS get their K masks at a reduced size (the same decoder output,
        upsampled to fewer pixels): the heat maps then have that size."""
        rng = object_rng(seed, item.id, "wobble")
        boxes, coords, labels = wobble_prompts(prompt, k, scale, rng, (item.height, item.width))
        out: Dict[str, Any] = {"k": k, "scale": scale, "seed": seed}
        shrink = min(1.0, math.sqrt(WOBBLE_PIXELS / (item.width * item.height)))
        size = (max(2, round(item.height * shrink)), max(2, round(item.width * shrink)))
        fx, fy = size[1] / item.width, size[0] / item.height
        embedding = Embedding(item.embedding.features, item.embedding.input_size, size, item.embedding.extras)
        work_boxes = None if boxes is None else boxes * [fx, fy, fx, fy]
        work_coords = None if coords is None else coords * [fx, fy]
        results, decoder_ms = self._both(embedding, work_boxes, work_coords, labels)
        out["decoder_ms"] = round(decoder_ms, 1)
        for key, (masks, scores, _, _) in results.items():
            counts = masks.sum(axis=0, dtype=np.int32)
            heat = np.rint(counts * (255.0 / k)).astype(np.uint8)
            out[key] = {"heat": png_data_url(heat), "stability": round(stability(masks), 4),
                        "mean_iou": round(float(scores.mean()), 4)}
        out["prompts"] = {
            "boxes": None if boxes is None else np.round(boxes, 1).tolist(),
            "points": None if coords is None else
            [[[round(float(x), 1), round(float(y), 1), int(lab)] for (x, y), lab in zip(c, l)]
             for c, l in zip(coords, labels)],
        }
        return out
