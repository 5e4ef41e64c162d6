"""StableSam3AutomaticMaskGenerator: "segment everything" on SAM 3's interactive path with the
plugins. The sam3 package has no automatic-mask generator for its SAM 1 task, so SAM's own
(`segment_anything.SamAutomaticMaskGenerator`: point grids, batches, IoU and stability filters,
NMS, crops, records) runs as it is over a `StableSam3Predictor`."""

from types import SimpleNamespace
from typing import Any, Optional, Tuple

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator

from ...modeling.family import EmbeddingSource
from ..automatic import with_model_defaults
from ..predictor import check_stable
from .predictor import StableSam3Predictor


class GridPredictor:
    """SamPredictor's interface as SamAutomaticMaskGenerator calls it (`set_image`,
    `reset_image`, `transform`, `device`, `predict_torch`, `model.mask_threshold`) over a
    StableSam3Predictor; images come from `cache` when one is given."""

    def __init__(self, predictor: StableSam3Predictor, cache: Optional[EmbeddingSource] = None) -> None:
        self.predictor, self.cache = predictor, cache
        self.model = SimpleNamespace(mask_threshold=predictor.mask_threshold)
        stable = predictor.stable
        self.transform = stable.backend.prompt_transform(stable.sam)

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        if self.cache is None:
            self.predictor.set_image(image, image_format)
        else:
            self.predictor.set_embedding(self.cache.get(self.predictor.stable.sam, np.ascontiguousarray(image)))

    def reset_image(self) -> None:
        self.predictor.reset_predictor()

    def predict_torch(self, point_coords: Optional[torch.Tensor], point_labels: Optional[torch.Tensor],
                      boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
                      multimask_output: bool = True, return_logits: bool = False
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts in the 1008 px input frame: (B, k, 2), (B, k). Returns masks (B, M, H, W),
        scores (B, M), low-res logits (B, M, 288, 288)."""
        return self.predictor._predict(point_coords, point_labels, boxes, mask_input, multimask_output,
                                       return_logits=return_logits)


class StableSam3AutomaticMaskGenerator(SamAutomaticMaskGenerator):
    """`SamAutomaticMaskGenerator(model, ...)`'s arguments and `generate(image)` records for a
    StableSam wrapping SAM 3 (image model, or a tracker with a backbone). With the plugins off it
    is SAM's generator on SAM 3's plain interactive decoder."""

    def __init__(self, model: Any, *args: Any, embedding_cache: Optional[EmbeddingSource] = None,
                 **kwargs: Any) -> None:
        check_stable(model, "StableSam3AutomaticMaskGenerator")
        if model.family != "sam3":
            raise TypeError(f"StableSam3AutomaticMaskGenerator takes a SAM 3 StableSam, not a {model.family} one")
        size = model.backend.image_size(model.sam)
        # SamAutomaticMaskGenerator builds a SamPredictor from the model's encoder size; it is replaced below
        shape = SimpleNamespace(image_encoder=SimpleNamespace(img_size=size), mask_threshold=0.0)
        super().__init__(shape, *args, **with_model_defaults(SamAutomaticMaskGenerator, model, args, kwargs))
        self.stable = model
        area = self.min_mask_region_area  # as SAM 2's generator builds its predictor
        self.predictor = GridPredictor(StableSam3Predictor(model, max_hole_area=area, max_sprinkle_area=area),
                                       embedding_cache)
