"""Stable-SAM inside FiftyOne: a model that `apply_model` runs with `prompt_field`, as FiftyOne's
own SAM zoo models do (the [fiftyone] extra).

    import fiftyone as fo
    from stablesam.integrations.fiftyone import StableSamModel

    dataset.apply_model(StableSamModel(), label_field="stable_sam", prompt_field="ground_truth")

Each `Detection` of the prompt field (a `Detections` field) is a box prompt; the output is the
same detections (label, bounding box, confidence and attributes kept) with `mask` filled in
(the mask inside the box, FiftyOne's instance-mask convention) and the attributes
`predicted_iou`, `stability_score` and `routing_alpha` (the plugins' [deformed, regular]
weights; None with the plugins off). An image's boxes go through the decoder in batched calls.
"""

from typing import Any, Dict, Optional, Union

import numpy as np

try:
    import fiftyone.core.labels as fol
    import fiftyone.core.models as fom
except ImportError:  # pragma: no cover - the extra's absence is tested in a subprocess
    raise ImportError('stablesam.integrations.fiftyone needs the [fiftyone] extra: '
                      'pip install "stable-segment-anything[fiftyone]"') from None

from ..annotate.worker import decode_boxes, mask_threshold, scores_of

PROMPT_KEYS = ("prompt_field", "box_prompt_field")  # what apply_model(..., prompt_field=F) sets


class StableSamModel(fom.SamplesMixin, fom.Model):
    """A FiftyOne image model: a Stable-SAM (a model SPEC as for `stablesam segment`, or a
    loaded `StableSam`) that turns a sample's box detections into instance masks."""

    def __init__(self, model: Union[str, Any] = "tiny-stable-sam", device: Optional[str] = None) -> None:
        fom.SamplesMixin.__init__(self)
        from ..backends.predictor import StableSamPredictor

        if isinstance(model, str):
            from ..models.spec import build_sam_for

            _, model = build_sam_for("fiftyone", model, device)
        self.model = model.eval()
        self.predictor = StableSamPredictor(self.model)
        self.threshold = mask_threshold(self.predictor)
        self._preprocess = False

    @property
    def media_type(self) -> str:
        return "image"

    @property
    def ragged_batches(self) -> bool:
        return True  # images of any size

    @property
    def transforms(self):
        return None

    @property
    def preprocess(self) -> bool:
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value: bool) -> None:
        self._preprocess = value

    def prompt_field(self) -> str:
        for key in PROMPT_KEYS:
            if self.needs_fields.get(key):
                return self.needs_fields[key]
        raise ValueError("StableSamModel needs box prompts: apply_model(model, prompt_field=FIELD), "
                         "FIELD a Detections field")

    def predict(self, arg: Any, sample=None) -> "fol.Detections":
        """arg: the image, (H, W, 3) uint8 RGB (as FiftyOne reads it); sample: its sample, whose
        prompt field holds the boxes. Returns Detections with masks."""
        field = self.prompt_field()
        if sample is None:
            raise ValueError("StableSamModel.predict needs the sample (its prompt field holds the boxes)")
        image = as_rgb(arg)
        prompts = sample[field]
        if prompts is None:
            return fol.Detections(detections=[])
        if not isinstance(prompts, fol.Detections):
            raise ValueError(f"prompt field {field!r} holds {type(prompts).__name__}; it must be Detections")
        return fol.Detections(detections=self.segment(image, prompts.detections))

    def segment(self, image: np.ndarray, detections: list) -> list:
        """The detections with masks (a copy each); detections whose box misses the image are
        returned unchanged (no mask)."""
        h, w = image.shape[:2]
        out = [d.copy() for d in detections]
        boxes, rows = [], []
        for i, d in enumerate(detections):
            x, y, bw, bh = d.bounding_box
            xyxy = np.clip(np.array([x * w, y * h, (x + bw) * w, (y + bh) * h], float), 0, [w, h, w, h])
            if np.isfinite(xyxy).all() and xyxy[2] > xyxy[0] and xyxy[3] > xyxy[1]:
                boxes.append(xyxy)
                rows.append(i)
        if not boxes:
            return out
        boxes = np.stack(boxes)
        for part, masks, iou, stability, alpha in decode_boxes(self.predictor, image, boxes, self.threshold):
            for j, i in enumerate(rows[part]):
                x0, y0, x1, y1 = boxes[part][j]
                det = out[i]
                det.mask = masks[j][int(round(y0)) : int(round(y1)), int(round(x0)) : int(round(x1))]
                extra: Dict[str, Any] = scores_of(iou[j], stability[j], None if alpha is None else alpha[j])
                for name, value in extra.items():
                    det[name] = value
        return out


def as_rgb(image: Any) -> np.ndarray:
    """What FiftyOne hands a model (a uint8 array, grey or with alpha, or a PIL image) -> (H, W, 3)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))
