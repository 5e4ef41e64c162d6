"""StableSam2Predictor: SAM2ImagePredictor with the plugins, `predict_batch` and `routing`."""

from typing import Any, Optional, Tuple

import numpy as np
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from ..predictor import StablePredictorMixin, check_stable


def fit_feature_sizes(predictor: SAM2ImagePredictor) -> SAM2ImagePredictor:
    """SAM2ImagePredictor assumes a 1024 px model; give it the sizes of this model's three
    backbone levels (strides 4, 8, 16)."""
    s = predictor.model.image_size
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return predictor


def plain_predictor(model: Any, **kwargs: Any) -> SAM2ImagePredictor:
    """SAM 2's own image predictor for a SAM2Base of any image size."""
    return fit_feature_sizes(SAM2ImagePredictor(model, **kwargs))


class StableSam2Predictor(StablePredictorMixin, SAM2ImagePredictor):
    """`SAM2ImagePredictor`'s call shape (`set_image`, `predict`; multimask_output defaults to
    True as there) for a StableSam wrapping a SAM 2. `predict_batch` is stablesam's (N prompts on
    the current image, like every family's); SAM 2's own image-batch `predict_batch` stays
    available as `predict_image_batch`."""

    predict_image_batch = SAM2ImagePredictor.predict_batch

    def __init__(self, model: Any, **kwargs: Any) -> None:
        check_stable(model)
        super().__init__(model.sam, **kwargs)
        fit_feature_sizes(self)
        self.stable = model

    @property
    def is_image_set(self) -> bool:
        return self._is_image_set

    @property
    def original_size(self) -> Tuple[int, int]:
        return tuple(self._orig_hw[-1])

    @torch.no_grad()
    def _predict(self, *args: Any, **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.stable.last_alpha = self.stable.last_offsets = None
        with self.stable.engaged():
            return super()._predict(*args, **kwargs)

    def _batch_inputs(self, boxes: Optional[np.ndarray], point_coords: Optional[np.ndarray],
                      point_labels: Optional[np.ndarray]):
        _, coords, labels, boxes_t = self._prep_prompts(point_coords, point_labels, boxes, None, True)
        return coords, labels, boxes_t

    def _decode_batch(self, points, labels, boxes, multimask_output: bool, return_logits: bool):
        return self._predict(points, labels, boxes, None, multimask_output, return_logits=return_logits)

    def set_embedding(self, embedding) -> None:
        """Use a cached `Embedding` (with its high-res features) instead of `set_image`."""
        self.reset_predictor()
        embedding = embedding.to(self.device)
        self._features = {"image_embed": embedding.features, "high_res_feats": embedding.extras["high_res_feats"]}
        self._orig_hw = [tuple(embedding.original_size)]
        self._is_image_set = True
