"""SAM 1: Meta's `segment_anything` (ViT-B/L/H, and the embedded tiny SAM)."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .base import Backend, Embedding, decode_sam_style


class Sam1Backend(Backend):
    family = "sam1"
    title = "SAM 1"
    extra = None  # segment_anything is a base dependency
    package = "segment_anything"

    def owns(self, model: Any) -> bool:
        from segment_anything.modeling import Sam

        return isinstance(model, Sam)

    def check(self, model: nn.Module) -> None:
        from segment_anything.modeling import TwoWayTransformer

        transformer = getattr(model.mask_decoder, "transformer", None)
        if not isinstance(transformer, TwoWayTransformer) or len(transformer.layers) != 2:
            raise ValueError("StableSam needs SAM's standard mask decoder: a TwoWayTransformer with 2 layers")

    def device(self, model: nn.Module) -> torch.device:
        return model.device

    def encode(self, model: nn.Module, image: np.ndarray) -> Embedding:
        """SAM's own `set_image` (resize, normalise, pad, encode)."""
        from segment_anything import SamPredictor

        predictor = SamPredictor(model)
        predictor.set_image(image)
        return Embedding(predictor.features, predictor.input_size, predictor.original_size)

    def decode(self, model: nn.Module, features: torch.Tensor, extras: Dict[str, List[torch.Tensor]],
               points: Optional[Tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor],
               mask_input: Optional[torch.Tensor], multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        return decode_sam_style(model, points, boxes, mask_input, features, multimask_output)

    def predictor(self, model: Any) -> Any:
        from .predictor import StableSamPredictor

        return StableSamPredictor(model)

    def automatic_generator(self) -> type:
        from .automatic import StableSamAutomaticMaskGenerator

        return StableSamAutomaticMaskGenerator

    def load(self, variant: str, path: Any, device: torch.device) -> nn.Module:
        from .official import load_official_sam

        return load_official_sam(path, variant, device)
