"""The plugin's model work, without Qt: image embeddings (once per image) and prompt decoding.

`NapariEngine` holds one StableSam and its predictor. `embed` runs the image encoder (the widget
calls it in a worker thread) and keeps the last few embeddings by image content; `decode` runs
the prompt encoder and mask decoder only, so a changed box or a new click costs one decoder pass.
Clicks are corrections, decoded as SAM's demo and `stablesam demo` do: the box (or else the first
click) alone, then each further click with the previous stage's low-res logits as `mask_input`;
earlier stages are kept, so a new click costs one decoder pass.
"""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..data.images import InputError
from ..prompts.checks import box_problem, point_inside

EMBEDDINGS_KEPT = 4  # image embeddings kept in memory (planes of a stack, images switched between)
STAGES_KEPT = 256  # low-res logits of earlier click stages (256 x 256 floats each for SAM)
STABILITY_OFFSET = 1.0  # SAM's stability score: IoU of the mask thresholded at -offset and +offset


@dataclass
class Prompt:
    """One object's prompt in image pixels: box (4,) XYXY or None; clicks (k, 2) XY, labels (k,)
    (1 foreground, 0 background), in the order they were placed."""

    box: Optional[np.ndarray]
    points: np.ndarray
    labels: np.ndarray

    @property
    def empty(self) -> bool:
        return self.box is None and not len(self.points)


@dataclass
class Result:
    """One decoded mask: mask (H, W) bool, the model's predicted IoU, SAM's stability score of
    the low-res logits, α (2,) = (deformed, regular) or None with the plugins off."""

    mask: np.ndarray
    iou: float
    stability: float
    alpha: Optional[np.ndarray]


def image_key(rgb: np.ndarray) -> str:
    """A key for an (H, W, 3) uint8 image: its shape and a hash of its pixels."""
    return f"{rgb.shape}:{hashlib.sha1(np.ascontiguousarray(rgb).data).hexdigest()}"


def check_prompt(prompt: Prompt, size: Tuple[int, int]) -> None:
    """InputError naming what in the prompt does not fit an image of size (H, W)."""
    if prompt.box is not None:
        problem = box_problem(prompt.box, size)
        if problem:
            raise InputError(f"box {', '.join(f'{v:.0f}' for v in prompt.box)}: {problem}")
    for x, y in prompt.points:
        if not point_inside(x, y, size):
            h, w = size
            raise InputError(f"click at x={x:.0f}, y={y:.0f} is outside the {w}x{h} image")


def stability_score(logits: np.ndarray, threshold: float = 0.0, offset: float = STABILITY_OFFSET) -> float:
    """SAM's stability score of low-res logits (h, w): IoU of {logits > t + offset} and
    {logits > t - offset}; 1 when both are empty."""
    inner = (logits > threshold + offset).sum()
    outer = (logits > threshold - offset).sum()
    return float(inner / outer) if outer else 1.0


class NapariEngine:
    """A StableSam for the napari widget. `plugins` in `decode` picks Stable-SAM (True) or the
    same weights as plain SAM (False); a model without a plugin is plain SAM either way."""

    def __init__(self, model, name: str):
        from ..backends.predictor import StableSamPredictor

        self.model = model.eval()
        self.name = name
        self.has_plugin = bool(model.plugins_enabled)
        self.predictor = StableSamPredictor(model)
        self.embeddings: "OrderedDict[str, object]" = OrderedDict()
        self.stages: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self.lock = threading.Lock()  # the predictor and the model's per-call state
        self.encoder_calls = 0

    @classmethod
    def from_spec(cls, spec: str, device: Optional[str] = None) -> "NapariEngine":
        """The engine of any SAM model SPEC that `stablesam segment --model` takes; a SPEC that
        cannot be built is an InputError (one line)."""
        from ..modeling.family import MissingExtra
        from ..models.spec import SpecError, build_sam_for

        try:
            parsed, model = build_sam_for("the napari plugin", spec, device)
        except (SpecError, MissingExtra) as e:
            raise InputError(str(e).splitlines()[0]) from None
        return cls(model, parsed.name)

    def cached(self, key: str) -> bool:
        return key in self.embeddings

    def embed(self, rgb: np.ndarray, key: Optional[str] = None) -> str:
        """Encode an (H, W, 3) uint8 image (unless kept) and return its key. Thread-safe with
        `decode`: the encoder runs outside the lock."""
        from ..models.cache import encode_image

        key = key or image_key(rgb)
        if key in self.embeddings:
            return key
        import torch

        with torch.no_grad():
            embedding = encode_image(self.model.sam, rgb)
        with self.lock:
            self.encoder_calls += 1
            self.embeddings[key] = embedding
            while len(self.embeddings) > EMBEDDINGS_KEPT:
                self.embeddings.popitem(last=False)
        return key

    def decode(self, key: str, prompt: Prompt, plugins: bool = True) -> Result:
        """The mask of `prompt` on the embedded image `key`, decoded click by click."""
        with self.lock:
            embedding = self.embeddings[key]
            self.embeddings.move_to_end(key)
            check_prompt(prompt, embedding.original_size)
            if prompt.empty:
                raise InputError("no prompt: draw a rectangle or place a click")
            plugins = plugins and self.has_plugin
            self.predictor.set_embedding(embedding)
            self.model.plugins_enabled = plugins
            try:
                return self._stages(key, prompt, plugins)
            finally:
                self.model.plugins_enabled = self.has_plugin

    def _stages(self, key: str, prompt: Prompt, plugins: bool) -> Result:
        first = 0 if prompt.box is not None else 1
        box = None if prompt.box is None else np.asarray(prompt.box, float)
        prev = None
        for j in range(first, len(prompt.points) + 1):
            stage = (key, plugins, None if box is None else box.tobytes(),
                     prompt.points[:j].tobytes(), prompt.labels[:j].tobytes())
            last = j == len(prompt.points)
            if not last and stage in self.stages:
                prev = self.stages[stage]
                self.stages.move_to_end(stage)
                continue
            masks, scores, logits = self.predictor.predict(
                point_coords=prompt.points[:j] if j else None, point_labels=prompt.labels[:j] if j else None,
                box=box, mask_input=prev, multimask_output=False)
            prev = logits[:1]
            self.stages[stage] = prev
            while len(self.stages) > STAGES_KEPT:
                self.stages.popitem(last=False)
        alpha = self.predictor.routing["alpha"]
        return Result(masks[0], float(scores[0]), stability_score(prev[0]),
                      None if alpha is None else alpha[0])
