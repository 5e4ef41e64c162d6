"""SAM 1: Meta's `segment_anything` (ViT-B/L/H, and the embedded tiny SAM)."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ...modeling.family import Backend, Embedding, decode_sam_style
from ...modeling.registry import register_family

MODEL_TYPES = ("vit_b", "vit_l", "vit_h")


@register_family
class Sam1Backend(Backend):
    family = "sam1"
    box_fit_routing = True
    title = "SAM 1"
    extra = None  # segment_anything is a base dependency
    requires = ("segment_anything",)
    variants = {t: t for t in MODEL_TYPES}  # segment_anything's sam_model_registry keys
    spec_help = ("  vit_b:PATH, vit_l:PATH, vit_h:PATH   SAM from an official checkpoint (plugins off)",)
    encoder_widths = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
    generic_signature = True  # every SAM-1-style decoder (HQ-SAM's too) has mask_decoder.* keys

    def checkpoint_signature(self, state: Dict[str, Any]) -> bool:
        return any(k.startswith("mask_decoder.") for k in state)

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
        from ..predictor import StableSamPredictor

        return StableSamPredictor(model)

    def automatic_generator(self) -> type:
        from ..automatic import StableSamAutomaticMaskGenerator

        return StableSamAutomaticMaskGenerator

    def load(self, variant: str, path: Any, device: torch.device) -> nn.Module:
        """A Sam built by Meta's builder for `variant` with the official `.pth` at `path`."""
        from segment_anything import sam_model_registry

        from ..official import CheckpointError, load_family_weights

        if variant not in MODEL_TYPES:
            raise CheckpointError(f"unknown model type {variant!r}; accepted: {', '.join(MODEL_TYPES)}")
        return load_family_weights(sam_model_registry[variant](), path, "sam1", variant, device)
