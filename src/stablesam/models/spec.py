"""Model SPECs (one syntax for eval, train, segment and demo) and the segmenters they build."""

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Set, Tuple

import cv2
import numpy as np
import torch

from ..backends import MissingExtra, get_backend, require
from ..backends.hq import VARIANTS as HQ_VARIANTS
from ..backends.official import MODEL_TYPES, CheckpointError, load_official_sam
from ..backends.predictor import StableSamPredictor
from ..backends.sam2 import CONFIGS as SAM2_CONFIGS
from ..modeling import StableSam
from ..prompts.generation import Prompts
from .cache import EmbeddingCache
from .files import load_decoder, load_sam_file
from .loading import wrap_sam

EMBEDDED = ("tiny-sam", "tiny-stable-sam")
# SPEC heads of the other SAM families -> family (each needs its pip extra)
FAMILY_BASES = {**{b: "hq" for b in HQ_VARIANTS}, **{b: "sam2" for b in SAM2_CONFIGS}, "hf": "hf"}
DEFAULT_SPEC = "tiny-stable-sam"
SAM_ACCEPTED = """accepted model SPECs:
  vit_b:PATH, vit_l:PATH, vit_h:PATH   SAM from an official checkpoint (plugins off)
  sam:PATH                             SAM from a stablesam SAM file (architecture + weights)
  hq_vit_b|l|h|tiny:PATH               HQ-SAM from an official checkpoint       (pip install "stablesam[hq]")
  sam2.1_hiera_t|s|b+|l:PATH           SAM 2.1 from an official checkpoint      (pip install "stablesam[sam2]")
  sam2_hiera_t|s|b+|l:PATH             SAM 2 from an official checkpoint        (pip install "stablesam[sam2]")
  hf:DIR                               transformers SamModel/Sam2Model folder   (pip install "stablesam[hf]")
  tiny-sam, tiny-stable-sam            the embedded base model / the embedded Stable-SAM
  SPEC+plugin=PATH                     Stable-SAM: that SAM with the plugin file at PATH
  SPEC+decoder=PATH                    that SAM with decoder-tuned weights (DT baseline)"""
ACCEPTED = SAM_ACCEPTED + """
  grabcut, grabcut@N                   OpenCV GrabCut initialised from the box (boxes only); @N: on the
                                       image resized to N px on its long side (faster; masks upsampled)"""


class SpecError(ValueError):
    """A model SPEC that cannot be built."""


@dataclass(frozen=True)
class ModelSpec:
    text: str
    base: str  # vit_b | vit_l | vit_h | sam | tiny-sam | tiny-stable-sam | grabcut | a FAMILY_BASES key
    checkpoint: Optional[Path] = None
    plugin: Optional[Path] = None
    decoder: Optional[Path] = None
    max_side: Optional[int] = None  # grabcut@N

    @property
    def name(self) -> str:
        return self.text

    @property
    def base_name(self) -> str:
        """What a plugin trained on this SPEC records as its base (e.g. 'vit_b:sam_vit_b.pth')."""
        if self.checkpoint is not None:
            return f"{self.base}:{self.checkpoint.name}"
        return "tiny-sam" if self.base in EMBEDDED else self.base


def parse_model_spec(text: str) -> ModelSpec:
    """Parse and check a SPEC (files must exist) before any work starts."""
    parts = re.split(r"\+(plugin|decoder)=", text.strip())
    head, extras = parts[0], dict(zip(parts[1::2], parts[2::2]))
    if len(parts) > 1 and len(extras) != (len(parts) - 1) // 2:
        raise SpecError(f"model SPEC {text!r} names +plugin or +decoder twice\n{ACCEPTED}")
    base, sep, path = head.partition(":")
    checkpoint = None
    if base in MODEL_TYPES + ("sam",) + tuple(FAMILY_BASES) and sep:
        checkpoint = Path(path)
        if base in FAMILY_BASES:
            try:
                require(FAMILY_BASES[base])
            except MissingExtra as e:
                raise SpecError(f"model SPEC {text!r}: {e}") from None
    elif base.partition("@")[0] == "grabcut" and not sep:
        if extras:
            raise SpecError(f"grabcut takes no +plugin/+decoder (in {text!r})\n{ACCEPTED}")
        side = base.partition("@")[2]
        if base != "grabcut" and not (side.isdigit() and int(side) >= 16):
            raise SpecError(f"model SPEC {text!r}: grabcut@N needs an integer N >= 16 (long side in px)\n{ACCEPTED}")
        return ModelSpec(text.strip(), "grabcut", max_side=int(side) if side else None)
    elif base not in EMBEDDED or sep:
        raise SpecError(f"unknown model SPEC {text!r}\n{ACCEPTED}")
    plugin = Path(extras["plugin"]) if "plugin" in extras else None
    decoder = Path(extras["decoder"]) if "decoder" in extras else None
    if base == "tiny-stable-sam" and plugin is not None:
        raise SpecError(f"{text!r}: tiny-stable-sam already has its plugin; use tiny-sam+plugin=PATH")
    if base == "hf" and not checkpoint.is_dir():
        raise SpecError(f"model SPEC {text!r}: hf:DIR needs a folder (what save_pretrained writes), "
                        f"not found: {checkpoint}\n{ACCEPTED}")
    for what, p in (("checkpoint", None if base == "hf" else checkpoint), ("plugin file", plugin),
                    ("decoder file", decoder)):
        if p is not None and not p.is_file():
            raise SpecError(f"model SPEC {text!r}: {what} not found: {p}\n{ACCEPTED}")
    if base in EMBEDDED:
        from .embedded import embedded_available

        if not embedded_available():
            raise SpecError(f"model SPEC {text!r}: the embedded model is not shipped in this installation\n{ACCEPTED}")
    return ModelSpec(text.strip(), base, checkpoint, plugin, decoder)


class Segmenter:
    """Anything that turns an image and prompts into masks."""

    name: str = "segmenter"
    kinds: Set[str] = {"gt-box", "noisy-box", "points", "adv-box", "best-box", "adv-point"}

    def accepts(self, kind: str) -> bool:
        return kind in self.kinds

    def set_image(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def predict(self, prompts: Prompts, multimask: bool = False) -> np.ndarray:
        """prompts for the current image -> masks (n, H, W) bool."""
        raise NotImplementedError


class SamSegmenter(Segmenter):
    """A (Stable-)SAM: embeddings from the cache, all n prompts in one decoder call."""

    def __init__(self, name: str, model: StableSam, cache: Optional[EmbeddingCache] = None):
        self.name = name
        self.model = model.eval()
        self.plugins = model.plugins_enabled
        self.cache = cache if cache is not None else EmbeddingCache(None)
        self.predictor = StableSamPredictor(model)

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_embedding(self.cache.get(self.model.sam, image))

    def predict(self, prompts: Prompts, multimask: bool = False) -> np.ndarray:
        self.model.plugins_enabled = self.plugins
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
    kinds = {"gt-box", "noisy-box", "adv-box", "best-box"}

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


def build_model(spec: ModelSpec, device: Optional[str] = None, force: bool = False) -> StableSam:
    """The StableSam a (non-grabcut) SPEC names; plugins on only with a plugin."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        if spec.base in EMBEDDED:
            from .embedded import load_embedded_sam

            sam, default_plugin = load_embedded_sam(device)
            plugin = default_plugin if spec.base == DEFAULT_SPEC else spec.plugin
        elif spec.base == "sam":
            sam, plugin = load_sam_file(spec.checkpoint, device), spec.plugin
        elif spec.base in FAMILY_BASES:
            sam, plugin = get_backend(FAMILY_BASES[spec.base]).load(spec.base, spec.checkpoint, device), spec.plugin
        else:
            sam = load_official_sam(spec.checkpoint, spec.base, device)
            plugin = spec.plugin
        if spec.decoder is not None:
            load_decoder(sam, spec.decoder, force=force)
        return wrap_sam(sam, plugin, force)
    except CheckpointError as e:
        raise SpecError(f"model SPEC {spec.text!r}: {e}") from None


def build_sam_for(command: str, text: str, device: Optional[str] = None, force: bool = False,
                  families: Optional[Tuple[str, ...]] = None) -> Tuple[ModelSpec, StableSam]:
    """(spec, model) for a command that needs a SAM: a grabcut SPEC, or a family outside
    `families` (e.g. ("sam1",) for what only segment_anything provides), is a SpecError."""
    spec = parse_model_spec(text)
    if spec.base == "grabcut":
        raise SpecError(f"grabcut is a benchmark peer (stablesam eval); {command} takes a SAM model SPEC")
    model = build_model(spec, device, force)
    if families is not None and model.family not in families:
        raise SpecError(f"{command} supports {', '.join(families)} models only; {spec.text!r} is a "
                        f"{model.family} model")
    return spec, model


def build_segmenter(
    spec: ModelSpec, cache: Optional[EmbeddingCache] = None, device: Optional[str] = None,
    force: bool = False, seed: int = 0,
) -> Segmenter:
    if spec.base == "grabcut":
        return GrabCutSegmenter(seed=seed, max_side=spec.max_side, name=spec.name)
    return SamSegmenter(spec.name, build_model(spec, device, force), cache)
