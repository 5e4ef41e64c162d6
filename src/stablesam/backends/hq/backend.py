"""HQ-SAM (`segment-anything-hq`, import `segment_anything_hq`): SAM's decoder plus an HQ
output token (appended after the mask tokens) that also reads early ViT features."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ...modeling.family import Backend, Embedding, decode_sam_style
from ...modeling.registry import register_family, require

VARIANTS = {"hq_vit_b": "vit_b", "hq_vit_l": "vit_l", "hq_vit_h": "vit_h", "hq_vit_tiny": "vit_tiny"}


@register_family
class HqBackend(Backend):
    family = "hq"
    box_fit_routing = True
    title = "HQ-SAM"
    extra = "hq"
    requires = ("segment_anything_hq", "timm")  # segment_anything_hq imports timm without declaring it
    variants = VARIANTS
    spec_help = ('  hq_vit_b|l|h|tiny:PATH               HQ-SAM from an official checkpoint       (pip install "stable-segment-anything[hq]")',)
    encoder_widths = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}  # the SAM 1 names its messages always gave

    def checkpoint_signature(self, state: Dict[str, Any]) -> bool:
        return "mask_decoder.hf_token.weight" in state

    def owns(self, model: Any) -> bool:
        from segment_anything_hq.modeling import Sam

        return isinstance(model, Sam)

    def device(self, model: nn.Module) -> torch.device:
        return model.device

    def encode(self, model: nn.Module, image: np.ndarray) -> Embedding:
        """HQ-SAM's own `set_image`; keeps the early ViT features its decoder reads (the first
        of `interm_features`, (1, h, w, C_vit))."""
        from segment_anything_hq import SamPredictor

        predictor = SamPredictor(model)
        predictor.set_image(image)
        return Embedding(predictor.features, predictor.input_size, predictor.original_size,
                         {"interm": [predictor.interm_features[0]]})

    def decode(self, model: nn.Module, features: torch.Tensor, extras: Dict[str, List[torch.Tensor]],
               points: Optional[Tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor],
               mask_input: Optional[torch.Tensor], multimask_output: bool,
               hq_token_only: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """HQ-SAM's decoder returns one mask (M = 1) either way: SAM's (best of 3 with
        multimask_output) plus the HQ mask, or the HQ mask alone with hq_token_only."""
        return decode_sam_style(model, points, boxes, mask_input, features, multimask_output,
                                hq_token_only=hq_token_only, interm_embeddings=extras["interm"])

    def predictor(self, model: Any, hq_token_only: bool = False) -> Any:
        from .predictor import StableHqPredictor

        return StableHqPredictor(model, hq_token_only=hq_token_only)

    def automatic_generator(self) -> type:
        from .automatic import StableHqAutomaticMaskGenerator

        return StableHqAutomaticMaskGenerator

    def build(self, variant: str) -> nn.Module:
        """A random-init HQ-SAM from the package's own builder (`hq_vit_b|l|h|tiny`)."""
        require("hq")
        from segment_anything_hq import sam_model_registry

        return sam_model_registry[VARIANTS[variant]]()

    def load(self, variant: str, path: Any, device: torch.device) -> nn.Module:
        from ..official import CheckpointError, load_family_weights

        if variant not in VARIANTS:
            raise CheckpointError(f"unknown HQ-SAM model {variant!r}; accepted: {', '.join(VARIANTS)}")
        model = self.build(variant)
        model.requires_grad_(False)  # HQ's builder leaves its HQ parts trainable
        return load_family_weights(model, path, "hq", variant, device)
