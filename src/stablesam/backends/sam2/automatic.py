"""StableSam2AutomaticMaskGenerator: SAM 2's "segment everything" on the Stable-SAM decoder."""

from typing import Any, Optional

from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

from ...modeling.family import EmbeddingSource
from ..automatic import CachedImageMixin, with_model_defaults
from ..predictor import check_stable
from .predictor import StableSam2Predictor


class CachedSam2Predictor(CachedImageMixin, StableSam2Predictor):
    """A StableSam2Predictor whose images come from an `EmbeddingSource`."""

    def __init__(self, model: Any, cache: EmbeddingSource, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.cache = cache


class StableSam2AutomaticMaskGenerator(SAM2AutomaticMaskGenerator):
    """`SAM2AutomaticMaskGenerator(model, ...)` for a StableSam wrapping a SAM 2 / 2.1: the
    package's generator as it is (grids, batches, filters, NMS, crops, optional m2m refinement,
    records), with its predictor replaced by a `StableSam2Predictor`. With the plugins off it
    computes exactly what SAM2AutomaticMaskGenerator computes on the SAM2Base."""

    def __init__(self, model: Any, *args: Any, embedding_cache: Optional[EmbeddingSource] = None,
                 **kwargs: Any) -> None:
        check_stable(model, "StableSam2AutomaticMaskGenerator")
        if model.family != "sam2":
            raise TypeError(f"StableSam2AutomaticMaskGenerator takes a SAM 2 StableSam, not a {model.family} one")
        super().__init__(model.sam, *args, **with_model_defaults(SAM2AutomaticMaskGenerator, model, args, kwargs))
        self.stable = model
        area = self.min_mask_region_area  # as SAM2AutomaticMaskGenerator builds its predictor
        options = dict(max_hole_area=area, max_sprinkle_area=area)
        self.predictor = (StableSam2Predictor(model, **options) if embedding_cache is None
                          else CachedSam2Predictor(model, embedding_cache, **options))
