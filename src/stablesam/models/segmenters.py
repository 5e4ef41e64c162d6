"""Segmenters: anything that turns an image and prompts into masks, a (Stable-)SAM or OpenCV's
GrabCut (the classic non-learned peer of the benchmark)."""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Set

import cv2
import numpy as np

from ..backends.predictor import StableSamPredictor
from ..modeling import StableSam
from ..precision import autocast
from ..prompts.generation import Prompts
from ..prompts.kinds import BOX_KINDS, EVAL_KINDS
from .cache import EmbeddingCache


class Segmenter:
    """Anything that turns an image and prompts into masks."""

    name: str = "segmenter"
    kinds: Set[str] = set(EVAL_KINDS)

    def accepts(self, kind: str) -> bool:
        return kind in self.kinds

    def set_image(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def predict(self, prompts: Prompts, multimask: bool = False) -> np.ndarray:
        """prompts for the current image -> masks (n, H, W) bool."""
        raise NotImplementedError


class SamSegmenter(Segmenter):
    """A (Stable-)SAM: embeddings from the cache, all n prompts in one decoder call; the decoder
    under autocast with `precision` bf16 / fp16 (`stablesam.precision`)."""

    def __init__(self, name: str, model: StableSam, cache: Optional[EmbeddingCache] = None,
                 precision: str = "fp32"):
        self.name = name
        self.precision = precision
        self.model = model.eval()
        self.plugins = model.plugins_enabled
        self.cache = cache if cache is not None else EmbeddingCache(None)
        self.predictor = StableSamPredictor(model)

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_embedding(self.cache.get(self.model.sam, image))

    def predict(self, prompts: Prompts, multimask: bool = False) -> np.ndarray:
        self.model.plugins_enabled = self.plugins
        with autocast(self.model.device, self.precision):
            masks, scores, _ = self.predictor.predict_batch(
                prompts.boxes, prompts.point_coords, prompts.point_labels, multimask_output=multimask
            )
        best = scores.argmax(axis=1)  # single-mask output: the only mask
        return masks[np.arange(len(masks)), best]


class GrabCutSegmenter(Segmenter):
    """OpenCV's GrabCut initialised from the box (5 iterations): the classic non-learned peer.

    The n boxes run in parallel threads (OpenCV releases the GIL). A box covering the whole
    image leaves GrabCut no background sample; the box itself is then the prediction.
    With `max_side`, GrabCut runs on the image resized (area) to that long side and the mask
    is resized back (nearest): GrabCut's time grows with the pixel count.
    """

    name = "grabcut"
    kinds = set(BOX_KINDS)

    def __init__(self, iterations: int = 5, seed: int = 0, workers: Optional[int] = None,
                 max_side: Optional[int] = None, name: str = "grabcut"):
        self.iterations = iterations
        self.seed = seed
        self.workers = workers or os.cpu_count() or 1
        self.max_side = max_side
        self.name = name
        self.image: Optional[np.ndarray] = None
        self.size = (0, 0)
        self.scale = 1.0

    def set_image(self, image: np.ndarray) -> None:
        self.size = image.shape[:2]
        h, w = self.size
        self.scale = min(1.0, self.max_side / max(h, w)) if self.max_side else 1.0
        if self.scale < 1.0:
            image = cv2.resize(image, (max(1, round(w * self.scale)), max(1, round(h * self.scale))),
                               interpolation=cv2.INTER_AREA)
        self.image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)

    def _one(self, box: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return self._grabcut(box)
        hs, ws = self.image.shape[:2]
        small_box = np.minimum(np.asarray(box, float) * self.scale, [ws - 1, hs - 1, ws - 1, hs - 1])
        small = self._grabcut(small_box).astype(np.uint8)
        h, w = self.size
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST) > 0

    def _grabcut(self, box: np.ndarray) -> np.ndarray:
        h, w = self.image.shape[:2]
        x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
        x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
        rect = (x0, y0, max(1, x1 - x0 + 1), max(1, y1 - y0 + 1))
        mask = np.zeros((h, w), np.uint8)
        cv2.setRNGSeed(self.seed)  # GrabCut's GMM init draws from OpenCV's (per-thread) RNG
        try:
            cv2.grabCut(self.image, mask, rect, np.zeros((1, 65)), np.zeros((1, 65)),
                        self.iterations, cv2.GC_INIT_WITH_RECT)
            return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        except cv2.error:
            out = np.zeros((h, w), bool)
            out[y0 : y1 + 1, x0 : x1 + 1] = True
            return out

    def predict(self, prompts: Prompts, multimask: bool = False) -> np.ndarray:
        if prompts.boxes is None:
            raise ValueError("grabcut takes box prompts only")
        with ThreadPoolExecutor(max_workers=min(self.workers, len(prompts.boxes))) as pool:
            return np.stack(list(pool.map(self._one, prompts.boxes)))
