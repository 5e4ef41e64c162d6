"""StableHfPredictor: SamPredictor's call shape for a StableSam wrapping a transformers SamModel,
Sam2Model or Sam3TrackerModel (transformers itself has no predictor; its processor and model do the work)."""

from typing import Any, Optional, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from ...modeling.family import Embedding
from ...modeling.geometry import SquareFrame
from ..predictor import StablePredictorMixin, check_stable
from ...prompts.checks import check_prompt


class StableHfPredictor(StablePredictorMixin):
    """`set_image`, `predict`, `predict_torch` as segment_anything's SamPredictor (prompts in
    original-image pixels; masks at the image's size), plus `predict_batch`, `routing` and
    `set_embedding`. Preprocessing is the transformers image processor's; the masks are
    upscaled as its `post_process_masks` does."""

    def __init__(self, model: Any, mask_threshold: float = 0.0) -> None:
        check_stable(model)
        self.stable = model
        self.model = model.sam
        self.backend = model.backend
        self.mask_threshold = mask_threshold
        self.transform = self.backend.prompt_transform(self.model)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.backend.device(self.model)

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features: Optional[torch.Tensor] = None
        self.extras: dict = {}
        self.original_size: Optional[Tuple[int, int]] = None
        self.input_size: Optional[Tuple[int, int]] = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """image: (H, W, 3) uint8 in `image_format` (RGB or BGR)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR, got {image_format!r}")
        if image_format == "BGR":
            image = np.ascontiguousarray(image[..., ::-1])
        self.set_embedding(self.backend.encode(self.model, image))

    def set_embedding(self, embedding: Embedding) -> None:
        """Use a precomputed `Embedding` (see `stablesam.models.cache`) instead of `set_image`."""
        embedding = embedding.to(self.device)
        self.features, self.extras = embedding.features, embedding.extras
        self.original_size, self.input_size = embedding.original_size, embedding.input_size
        self.is_image_set = True

    def predict(self, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                box: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
                multimask_output: bool = True, return_logits: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One prompt: point_coords (k, 2) XY with point_labels (k,), box (4,) XYXY, in image
        pixels. Returns masks (M, H, W), scores (M,), low-res logits (M, 4h, 4w)."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        check_prompt(point_coords, point_labels, box)  # as the command line: InputError
        points, labels, boxes = self._batch_inputs(
            None if box is None else np.asarray(box, float)[None],
            None if point_coords is None else np.asarray(point_coords, float)[None],
            None if point_labels is None else np.asarray(point_labels)[None],
        )
        mask_t = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float, device=self.device)[None]
        masks, scores, low = self.predict_torch(points, labels, boxes, mask_t, multimask_output, return_logits)
        return masks[0].cpu().numpy(), scores[0].cpu().numpy(), low[0].cpu().numpy()

    @torch.no_grad()
    def predict_torch(self, point_coords: Optional[torch.Tensor], point_labels: Optional[torch.Tensor],
                      boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
                      multimask_output: bool = True, return_logits: bool = False
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """B prompts in the input frame: (B, k, 2), (B, k), (B, 4). Returns masks (B, M, H, W),
        scores (B, M), low-res logits (B, M, 4h, 4w)."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        self.stable.last_alpha = self.stable.last_offsets = None
        points = None if point_coords is None else (point_coords, point_labels)
        low, scores = self.stable.decode(self.features, points, boxes, mask_input, multimask_output, self.extras)
        masks = self.postprocess(low)
        return (masks if return_logits else masks > self.mask_threshold), scores, low

    def postprocess(self, low: torch.Tensor) -> torch.Tensor:
        """(B, M, 4h, 4w) logits -> (B, M, H, W) at the image's size: SamModel's frame is the
        padded square (crop to the resized image first), Sam2Model's and Sam3TrackerModel's the
        whole square."""
        if not isinstance(self.backend.frame(self.model), SquareFrame):
            s = self.backend.image_size(self.model)
            low = F.interpolate(low, (s, s), mode="bilinear", align_corners=False)
            low = low[..., : self.input_size[0], : self.input_size[1]]
        return F.interpolate(low, self.original_size, mode="bilinear", align_corners=False)
