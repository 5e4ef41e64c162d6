"""StableSamAutomaticMaskGenerator: SAM's "segment everything" on the Stable-SAM decoder.

`segment_anything.SamAutomaticMaskGenerator` runs as it is (its point grids, batching, IoU and
stability filters, NMS, crops, small-region clean-up and output records); only its predictor is
replaced by a `StableSamPredictor`, whose decoder calls run with the plugins engaged when
`model.plugins_enabled`. The image encoder runs once per image (crop); each batch of
`points_per_batch` grid points then goes through the prompt encoder and mask decoder only.
With the plugins off it computes exactly what SamAutomaticMaskGenerator computes on the Sam.
"""

from typing import Any, Optional

import numpy as np
from segment_anything import SamAutomaticMaskGenerator

from .cache import EmbeddingCache
from .modeling import StableSam
from .predictor import StableSamPredictor


class CachedEmbeddingPredictor(StableSamPredictor):
    """A StableSamPredictor whose `set_image` takes the embedding from an `EmbeddingCache`, so
    SAM and Stable-SAM (or two point grids) on one image share one encoder run."""

    def __init__(self, model: StableSam, cache: EmbeddingCache) -> None:
        super().__init__(model)
        self.cache = cache

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """image: (H, W, 3) uint8 in `image_format` (RGB or BGR), as SamPredictor.set_image."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR, got {image_format!r}")
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        self.set_embedding(self.cache.get(self.model, np.ascontiguousarray(image)))


class StableSamAutomaticMaskGenerator(SamAutomaticMaskGenerator):
    """`SamAutomaticMaskGenerator(model, ...)` for a StableSam: the same arguments (after the
    model) and the same `generate(image)` output, a list of records with `segmentation`
    (binary mask (H, W) or RLE, per `output_mode`), `area`, `bbox` (XYWH), `predicted_iou`,
    `stability_score`, `point_coords` and `crop_box` (XYWH).

    embedding_cache: optional `stablesam.cache.EmbeddingCache`; image embeddings then come from
    it (and are computed once per image and crop across generators sharing the cache).
    """

    def __init__(self, model: StableSam, *args: Any, embedding_cache: Optional[EmbeddingCache] = None,
                 **kwargs: Any) -> None:
        if not isinstance(model, StableSam):
            raise TypeError(
                f"StableSamAutomaticMaskGenerator takes a StableSam, got {type(model).__name__}; "
                "wrap a Sam with stablesam.StableSam(sam) (or use SamAutomaticMaskGenerator for plain SAM)"
            )
        if model.family != "sam1":
            raise TypeError(f"StableSamAutomaticMaskGenerator runs segment_anything's generator: SAM 1 only, "
                            f"not a {model.family} model")
        super().__init__(model.sam, *args, **kwargs)
        self.stable = model
        if embedding_cache is None:
            self.predictor = StableSamPredictor(model)
        else:
            self.predictor = CachedEmbeddingPredictor(model, embedding_cache)
