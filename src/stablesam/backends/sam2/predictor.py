"""StableSam2Predictor: SAM2ImagePredictor with the plugins, `predict_batch` and `routing`."""

from typing import Any

from sam2.sam2_image_predictor import SAM2ImagePredictor

from ..predictor import Sam2StylePredictorMixin, StablePredictorMixin, check_stable


def fit_feature_sizes(predictor: SAM2ImagePredictor) -> SAM2ImagePredictor:
    """SAM2ImagePredictor assumes a 1024 px model; give it the sizes of this model's three
    backbone levels (strides 4, 8, 16)."""
    s = predictor.model.image_size
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return predictor


def plain_predictor(model: Any, **kwargs: Any) -> SAM2ImagePredictor:
    """SAM 2's own image predictor for a SAM2Base of any image size."""
    return fit_feature_sizes(SAM2ImagePredictor(model, **kwargs))


class StableSam2Predictor(Sam2StylePredictorMixin, StablePredictorMixin, SAM2ImagePredictor):
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
