"""StableSam3Predictor: SAM 3's SAM 1-task predictor (`SAM3InteractiveImagePredictor`) with the
plugins, `predict_batch`, `routing` and `set_embedding`."""

from typing import Any

import numpy as np
from sam3.model.sam1_task_predictor import SAM3InteractiveImagePredictor

from ..predictor import Sam2StylePredictorMixin, StablePredictorMixin, check_stable
from .tracker import tracker_of


def fit_feature_sizes(predictor: SAM3InteractiveImagePredictor) -> SAM3InteractiveImagePredictor:
    """The predictor assumes a 1008 px model; give it the sizes of this model's three levels
    (4x, 2x and 1x the embedding grid)."""
    g = predictor.model.image_size // predictor.model.backbone_stride
    predictor._bb_feat_sizes = [(4 * g, 4 * g), (2 * g, 2 * g), (g, g)]
    return predictor


def plain_predictor(model: Any, **kwargs: Any) -> SAM3InteractiveImagePredictor:
    """SAM 3's own SAM 1-task predictor on the tracker of `model` (image model or tracker)."""
    return fit_feature_sizes(SAM3InteractiveImagePredictor(tracker_of(model), **kwargs))


class StableSam3Predictor(Sam2StylePredictorMixin, StablePredictorMixin, SAM3InteractiveImagePredictor):
    """`SAM3InteractiveImagePredictor`'s call shape (`set_image`, `predict`; multimask_output
    defaults to True as there; boxes and clicks in original-image pixels, SAM 1 style) for a
    StableSam wrapping a SAM 3 image model or its tracker. `set_image` runs the image model's
    backbone (`Sam3Image.predict_inst`'s features); `predict_batch` is stablesam's (N prompts on
    the current image); SAM 3's own image-batch `predict_batch` stays as `predict_image_batch`."""

    predict_image_batch = SAM3InteractiveImagePredictor.predict_batch

    def __init__(self, model: Any, **kwargs: Any) -> None:
        check_stable(model)
        super().__init__(tracker_of(model.sam), **kwargs)
        fit_feature_sizes(self)
        object.__setattr__(self, "stable", model)  # not a submodule of this predictor

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """image: (H, W, 3) uint8 in `image_format` (RGB or BGR); encoded by the image model's
        backbone (a tracker built without one cannot encode: use `set_embedding`)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR, got {image_format!r}")
        if image_format == "BGR":
            image = image[..., ::-1]
        self.set_embedding(self.stable.backend.encode(self.stable.sam, np.ascontiguousarray(image)))
