"""SAM 2 / 2.1 (`sam2`): Hiera encoder, a decoder whose output tokens start with an
object-score token (so the single-mask token is index 2) and that also reads two
high-resolution feature maps. Images are resized to a square (no padding)."""

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ...modeling.family import Backend, Embedding, decode_sam2_style
from ...modeling.geometry import SquareFrame
from ...modeling.registry import register_family, require

CONFIGS = {
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_t": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_s": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_b+": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_l": "configs/sam2/sam2_hiera_l.yaml",
}


@contextmanager
def sam2_configs() -> Iterator[None]:
    """Hydra pointed at the sam2 package's own configs for the duration, whatever Hydra state
    the caller has (restored afterwards): users never touch Hydra or its search path."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("sam2", version_base="1.2"):
            yield
    finally:
        restore_gh_from_backup(backup)


@register_family
class Sam2Backend(Backend):
    family = "sam2"
    title = "SAM 2.1"
    extra = "sam2"
    requires = ("sam2",)
    variants = CONFIGS
    spec_help = ('  sam2.1_hiera_t|s|b+|l:PATH           SAM 2.1 from an official checkpoint      (pip install "stable-segment-anything[sam2]")',
                 '  sam2_hiera_t|s|b+|l:PATH             SAM 2 from an official checkpoint        (pip install "stable-segment-anything[sam2]")')

    def checkpoint_signature(self, state: Dict[str, Any]) -> bool:
        return any(k.startswith("sam_mask_decoder.") for k in state)

    def owns(self, model: Any) -> bool:
        from sam2.modeling.sam2_base import SAM2Base

        return isinstance(model, SAM2Base)

    def decoder(self, model: nn.Module) -> nn.Module:
        return model.sam_mask_decoder

    def prompt_encoder(self, model: nn.Module) -> nn.Module:
        return model.sam_prompt_encoder

    def token_positions(self, model: nn.Module) -> Tuple[int, int, slice]:
        decoder = self.decoder(model)
        s = 1 if decoder.pred_obj_scores else 0  # the object-score token comes first
        return s, s + 1, slice(0, s + 1 + decoder.num_mask_tokens)

    def image_size(self, model: nn.Module) -> int:
        return model.image_size

    def device(self, model: nn.Module) -> torch.device:
        return model.device

    def encode(self, model: nn.Module, image: np.ndarray) -> Embedding:
        """SAM2ImagePredictor's own `set_image`; keeps its two high-res feature maps."""
        from .predictor import plain_predictor

        predictor = plain_predictor(model)
        predictor.set_image(image)
        feats = predictor._features
        size = self.image_size(model)
        return Embedding(feats["image_embed"], (size, size), predictor._orig_hw[-1],
                         {"high_res_feats": list(feats["high_res_feats"])})

    def frame(self, model: nn.Module) -> SquareFrame:
        return SquareFrame(self.image_size(model))

    def decode(self, model: nn.Module, features: torch.Tensor, extras: Dict[str, List[torch.Tensor]],
               points: Optional[Tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor],
               mask_input: Optional[torch.Tensor], multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """SAM2ImagePredictor's decoder call (box as two points labelled 2 and 3)."""
        return decode_sam2_style(model.sam_prompt_encoder, model.sam_mask_decoder, features,
                                 extras["high_res_feats"], points, boxes, mask_input, multimask_output)

    def predictor(self, model: Any, **kwargs: Any) -> Any:
        from .predictor import StableSam2Predictor

        return StableSam2Predictor(model, **kwargs)

    def automatic_generator(self) -> type:
        from .automatic import StableSam2AutomaticMaskGenerator

        return StableSam2AutomaticMaskGenerator

    def build(self, variant: str, image_size: Optional[int] = None) -> nn.Module:
        """A random-init SAM 2 from the package's own config for `variant` (eval mode, CPU);
        image_size overrides the config's 1024 (a multiple of 64; smaller is faster)."""
        require("sam2")
        from sam2.build_sam import build_sam2

        overrides = [f"++model.image_size={int(image_size)}"] if image_size else []
        with sam2_configs():
            return build_sam2(CONFIGS[variant], None, device="cpu", hydra_overrides_extra=overrides)

    def load(self, variant: str, path: Any, device: torch.device) -> nn.Module:
        from ..official import CheckpointError, load_family_weights

        if variant not in CONFIGS:
            raise CheckpointError(f"unknown SAM 2 model {variant!r}; accepted: {', '.join(CONFIGS)}")
        return load_family_weights(self.build(variant), path, "sam2", variant, device)
