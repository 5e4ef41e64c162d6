"""StableHqPredictor: HQ-SAM's SamPredictor with the plugins, `predict_batch` and `routing`."""

from typing import Any, Tuple

import torch
from segment_anything_hq import SamPredictor as HqSamPredictor

from ..predictor import StablePredictorMixin, check_stable


class StableHqPredictor(StablePredictorMixin, HqSamPredictor):
    """HQ-SAM's `SamPredictor` call shape (`predict(..., hq_token_only=False)`) for a StableSam
    wrapping an HQ-SAM; `hq_token_only` here is the default `predict_batch` uses."""

    def __init__(self, model: Any, hq_token_only: bool = False) -> None:
        check_stable(model)
        super().__init__(model.sam)
        self.stable = model
        self.hq_token_only = hq_token_only

    @torch.no_grad()
    def predict_torch(self, *args: Any, **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.stable.last_alpha = self.stable.last_offsets = None
        with self.stable.engaged():
            return super().predict_torch(*args, **kwargs)

    def _decode_batch(self, points, labels, boxes, multimask_output: bool, return_logits: bool):
        return self.predict_torch(points, labels, boxes, None, multimask_output, return_logits=return_logits,
                                  hq_token_only=self.hq_token_only)

    def _empty_batch(self, multimask_output: bool, return_logits: bool):
        masks, scores, logits = super()._empty_batch(False, return_logits)  # HQ-SAM: always 1 mask
        return masks, scores, logits

    def set_embedding(self, embedding) -> None:
        """Use a cached `Embedding` (with its early ViT features) instead of `set_image`."""
        self.reset_image()
        embedding = embedding.to(self.device)
        self.features, self.interm_features = embedding.features, embedding.extras["interm"]
        self.original_size = tuple(embedding.original_size)
        self.input_size = tuple(embedding.input_size)
        self.is_image_set = True
