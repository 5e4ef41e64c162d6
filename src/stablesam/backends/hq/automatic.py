"""StableHqAutomaticMaskGenerator: HQ-SAM's "segment everything" on the Stable-SAM decoder."""

from typing import Any, Optional

from segment_anything_hq import SamAutomaticMaskGenerator as HqSamAutomaticMaskGenerator

from ...modeling.family import EmbeddingSource
from ..automatic import CachedImageMixin, with_model_defaults
from ..predictor import check_stable
from .predictor import StableHqPredictor


class CachedHqPredictor(CachedImageMixin, StableHqPredictor):
    """A StableHqPredictor whose images come from an `EmbeddingSource`."""

    def __init__(self, model: Any, cache: EmbeddingSource) -> None:
        super().__init__(model)
        self.cache = cache


class StableHqAutomaticMaskGenerator(HqSamAutomaticMaskGenerator):
    """HQ-SAM's `SamAutomaticMaskGenerator(model, ...)` for a StableSam wrapping an HQ-SAM (its
    `generate(image, multimask_output=True)` included), with a `StableHqPredictor`. With the
    plugins off it computes exactly what HQ-SAM's generator computes."""

    def __init__(self, model: Any, *args: Any, embedding_cache: Optional[EmbeddingSource] = None,
                 **kwargs: Any) -> None:
        check_stable(model, "StableHqAutomaticMaskGenerator")
        if model.family != "hq":
            raise TypeError(f"StableHqAutomaticMaskGenerator takes an HQ-SAM StableSam, not a {model.family} one")
        super().__init__(model.sam, *args, **with_model_defaults(HqSamAutomaticMaskGenerator, model, args, kwargs))
        self.stable = model
        self.predictor = StableHqPredictor(model) if embedding_cache is None else CachedHqPredictor(model, embedding_cache)
