"""StableSamAutomaticMaskGenerator: SAM's "segment everything" on the Stable-SAM decoder.

`segment_anything.SamAutomaticMaskGenerator` runs as it is (its point grids, batching, IoU and
stability filters, NMS, crops, small-region clean-up and output records); only its predictor is
replaced by a `StableSamPredictor`, whose decoder calls run with the plugins engaged when
`model.plugins_enabled`. The image encoder runs once per image (crop); each batch of
`points_per_batch` grid points then goes through the prompt encoder and mask decoder only.
The decoder's low-resolution masks are scaled up to the image only where their predicted IoU
passes `pred_iou_thresh` (the generator's first filter drops the others unseen), which saves
most of the upscaling on a CPU. With the plugins off it computes exactly what
SamAutomaticMaskGenerator computes on the Sam.

For HQ-SAM and SAM 2 / 2.1 the same is done with their packages' own generators
(`stablesam.backends.hq.automatic`, `stablesam.backends.sam2.automatic`, ...); `StableSamAutomaticMaskGenerator(model)`
returns the one for the model's family.

Default thresholds belong to the model: a model that records its own (the embedded tiny SAM,
see `stablesam.models.embedded.AUTOMATIC_DEFAULTS`) gets them wherever the caller leaves them out;
any other model gets its package generator's defaults (SAM's 0.88 / 0.95). `stablesam segment
--everything` builds its generator the same way, so API and CLI agree.
"""

import inspect
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator

from ..modeling import StableSam
from ..modeling.family import AUTOMATIC_DEFAULTS_ATTR, EmbeddingSource
from .predictor import StableSamPredictor


def automatic_defaults(model: StableSam) -> Dict[str, Any]:
    """The generator arguments `model` records as its own defaults (e.g. {"pred_iou_thresh":
    0.3, "stability_score_thresh": 0.3} for the embedded model); {} for a model that records
    none, which then gets the generator's own defaults."""
    return dict(getattr(model.sam, AUTOMATIC_DEFAULTS_ATTR, None) or {})


def with_model_defaults(generator: type, model: StableSam, args: Tuple, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """`kwargs` plus the model's `automatic_defaults` for each argument of `generator`'s
    `__init__` (after the model) that the caller gave neither by position nor by name."""
    names = list(inspect.signature(generator.__init__).parameters)[2:]  # after self, model
    given = set(names[:len(args)]) | set(kwargs)
    return {**{k: v for k, v in automatic_defaults(model).items() if k in names and k not in given}, **kwargs}


class UpscaleKeptMixin:
    """Put first in a SAM 1 predictor's bases: `predict_torch` scales the decoder's low-res
    masks up to the image only where their predicted IoU is above `upscale_above` (the
    generator's pred_iou_thresh); the others come back as zero logits, which the generator's
    predicted-IoU filter drops before reading them. Outputs are otherwise SamPredictor's."""

    upscale_above: float = 0.0

    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output: bool = True,
                      return_logits: bool = False, **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As SamPredictor.predict_torch: masks (B, M, H, W), IoU predictions (B, M), low-res
        logits (B, M, h, w)."""
        sam = self.model
        upscale = sam.postprocess_masks
        sam.postprocess_masks = lambda low_res, *_: low_res  # the decoder's masks as they are
        try:
            low_res, iou, logits = super().predict_torch(point_coords, point_labels, boxes, mask_input,
                                                         multimask_output, return_logits=True, **kwargs)
        finally:
            del sam.postprocess_masks
        keep = iou > self.upscale_above if self.upscale_above > 0 else torch.ones_like(iou, dtype=torch.bool)
        h, w = self.original_size
        masks = low_res.new_zeros((*low_res.shape[:2], h, w))
        if keep.any():
            masks[keep] = upscale(low_res[keep][:, None], self.input_size, self.original_size)[:, 0]
        return (masks if return_logits else masks > sam.mask_threshold), iou, logits


class CachedImageMixin:
    """Put first in a family's Stable predictor's bases: `set_image` then takes the embedding
    from `self.cache` (an `EmbeddingCache`), so SAM and Stable-SAM (or two point grids) on one
    image share one encoder run."""

    cache: EmbeddingSource
    stable: StableSam

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """image: (H, W, 3) uint8 in `image_format` (RGB or BGR), as SamPredictor.set_image."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR, got {image_format!r}")
        if image_format != getattr(self.stable.sam, "image_format", "RGB"):
            image = image[..., ::-1]
        self.set_embedding(self.cache.get(self.stable.sam, np.ascontiguousarray(image)))


class UpscaleKeptPredictor(UpscaleKeptMixin, StableSamPredictor):
    """The automatic generator's StableSamPredictor (SAM 1): see `UpscaleKeptMixin`."""


class CachedEmbeddingPredictor(CachedImageMixin, UpscaleKeptPredictor):
    """The automatic generator's predictor (SAM 1) whose images come from an `EmbeddingCache`."""

    def __init__(self, model: StableSam, cache: EmbeddingSource) -> None:
        super().__init__(model)
        self.cache = cache


class StableSamAutomaticMaskGenerator(SamAutomaticMaskGenerator):
    """`SamAutomaticMaskGenerator(model, ...)` for a StableSam: the same arguments (after the
    model) and the same `generate(image)` output, a list of records with `segmentation`
    (binary mask (H, W) or RLE, per `output_mode`), `area`, `bbox` (XYWH), `predicted_iou`,
    `stability_score`, `point_coords` and `crop_box` (XYWH).

    embedding_cache: optional `stablesam.models.cache.EmbeddingCache`; image embeddings then come from
    it (and are computed once per image and crop across generators sharing the cache).

    Arguments left out take the model's own defaults where it records them
    (`automatic_defaults(model)`: the embedded model's calibrated pred_iou_thresh 0.3 and
    stability_score_thresh 0.3), else SamAutomaticMaskGenerator's (0.88 / 0.95).

    For an HQ-SAM or SAM 2 StableSam this returns that family's generator (the package's own
    generator with the family's Stable predictor; SAM 2's takes SAM2AutomaticMaskGenerator's
    arguments). Hugging Face models have none (transformers' mask-generation pipeline is a
    different API).
    """

    def __new__(cls, model: StableSam, *args: Any, **kwargs: Any):
        if cls is StableSamAutomaticMaskGenerator and isinstance(model, StableSam) and model.family != "sam1":
            return model.backend.automatic_generator()(model, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, model: StableSam, *args: Any, embedding_cache: Optional[EmbeddingSource] = None,
                 **kwargs: Any) -> None:
        if not isinstance(model, StableSam):
            raise TypeError(
                f"StableSamAutomaticMaskGenerator takes a StableSam, got {type(model).__name__}; "
                "wrap a Sam with stablesam.StableSam(sam) (or use SamAutomaticMaskGenerator for plain SAM)"
            )
        super().__init__(model.sam, *args, **with_model_defaults(SamAutomaticMaskGenerator, model, args, kwargs))
        self.stable = model
        if embedding_cache is None:
            self.predictor = UpscaleKeptPredictor(model)
        else:
            self.predictor = CachedEmbeddingPredictor(model, embedding_cache)

    def _process_batch(self, *args: Any, **kwargs: Any):
        self.predictor.upscale_above = self.pred_iou_thresh  # read at each batch: it may have been changed
        return super()._process_batch(*args, **kwargs)
