"""What the plugins need to know about one SAM family, as one small class per family (the
interface; each family's class lives in its subpackage of `stablesam.backends`).

Every family keeps SAM's decoder design: a two-layer, 256-d two-way transformer whose layer 2
runs self-attention, a LayerNorm, then a token-to-image attention. A `Backend` says where
those modules are, how they are called, where the output tokens sit, and how the family builds,
loads, encodes and decodes; `StableSam` and `StableSamPredictor` do the rest the same way.
"""

from typing import Any, Dict, List, Optional, Protocol, Tuple

import numpy as np
import torch
from torch import nn

from .geometry import PaddedFrame


# Where a model records its own automatic-mask ("segment everything") defaults, a dict of
# generator arguments (the embedded tiny SAM's, see `stablesam.models.embedded`); the family
# generators read it (`stablesam.backends.automatic.automatic_defaults`).
AUTOMATIC_DEFAULTS_ATTR = "stablesam_automatic_defaults"


class MissingExtra(ImportError):
    """A SAM family whose package is not installed; the message names the pip extra."""


class Embedding:
    """An image embedding (1, C, h, w) with the sizes a predictor needs, plus what else the
    family's decoder reads (`extras`): HQ-SAM's early ViT features, SAM 2's high-res features."""

    def __init__(self, features: torch.Tensor, input_size: Tuple[int, int], original_size: Tuple[int, int],
                 extras: Optional[Dict[str, List[torch.Tensor]]] = None):
        self.features = features
        self.input_size = tuple(int(v) for v in input_size)
        self.original_size = tuple(int(v) for v in original_size)
        self.extras = dict(extras or {})

    def to(self, device: torch.device) -> "Embedding":
        extras = {k: [t.to(device) for t in v] for k, v in self.extras.items()}
        return Embedding(self.features.to(device), self.input_size, self.original_size, extras)


class EmbeddingSource(Protocol):
    """Where a predictor takes its image embeddings from (`stablesam.models.cache.EmbeddingCache`):
    one encoder run per image, shared by every predictor that asks."""

    def get(self, sam: nn.Module, image: np.ndarray) -> Embedding:
        """The `Embedding` of an (H, W, 3) uint8 RGB image under `sam`'s image encoder."""
        ...


def decode_sam_style(model: nn.Module, points: Optional[Tuple[torch.Tensor, torch.Tensor]],
                     boxes: Optional[torch.Tensor], mask_input: Optional[torch.Tensor], features: torch.Tensor,
                     multimask_output: bool, **decoder_options: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """Meta's `Sam.forward` decode step for one image's B prompts: prompt encoder, then the mask
    decoder (SAM 1, and HQ-SAM with its extra `decoder_options`) -> (low-res logits, IoU scores)."""
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
    return model.mask_decoder(
        image_embeddings=features,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
        **decoder_options,
    )


def decode_sam2_style(prompt_encoder: nn.Module, mask_decoder: nn.Module, features: torch.Tensor,
                      high_res_features: List[torch.Tensor], points: Optional[Tuple[torch.Tensor, torch.Tensor]],
                      boxes: Optional[torch.Tensor], mask_input: Optional[torch.Tensor],
                      multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """SAM2ImagePredictor's decode step (SAM 2 / 2.1, and SAM 3's interactive tracker, which
    keeps it): a box enters as two points labelled 2 and 3, before the clicks. features
    (1, C, h, w), high_res_features the two finer maps; returns (low-res logits (B, M, 4h, 4w),
    IoU scores (B, M))."""
    if boxes is not None:
        box_points = boxes.reshape(-1, 2, 2)
        box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).repeat(len(boxes), 1)
        if points is None:
            points = (box_points, box_labels)
        else:
            points = (torch.cat([box_points, points[0]], 1), torch.cat([box_labels, points[1]], 1))
    sparse, dense = prompt_encoder(points=points, boxes=None, masks=mask_input)
    low, iou, _, _ = mask_decoder(
        image_embeddings=features,
        image_pe=prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
        repeat_image=features.shape[0] != sparse.shape[0],
        high_res_features=high_res_features,
    )
    return low, iou


class Backend:
    """One SAM family. Subclasses fill in the family-specific parts.

    Token layout: the decoder's output tokens are (B, n, C); `token_positions` gives the IoU
    token's index, the single-mask token's index, and the slice of all output tokens.
    """

    family: str = ""  # short name recorded in plugin files: sam1 | hq | sam2 | hf
    title: str = ""  # for messages: "SAM 1", "HQ-SAM", "SAM 2.1", ...
    extra: Optional[str] = None  # pip extra that installs the family's package (None: a base dependency)
    requires: Tuple[str, ...] = ()  # import names the family needs, its own package first
    variants: Dict[str, Any] = {}  # SPEC head -> what the family's builder needs for it
    spec_help: Tuple[str, ...] = ()  # the family's lines of the accepted-SPEC text
    checkpoint_is_folder: bool = False  # HEAD:PATH names a folder (transformers), not a file
    encoder_widths: Dict[int, str] = {}  # image-encoder width -> SPEC head, for "it looks like a ..." hints
    generic_signature: bool = False  # the signature is shared by the others' checkpoints: ask it last
    norm_name: str = "norm1"  # layer 2's LayerNorm after self-attention
    attn_kwargs: Tuple[str, str, str] = ("q", "k", "v")  # token-to-image attention's q/k/v names
    encoder_prefix: str = "image_encoder."  # state-dict prefix of the image encoder
    box_fit_routing: bool = False  # fit, selector and refine work (prompt_inputs / decoder_masks)
    # transformers model_type -> (model class, image processor class) of this family's models
    # that `hf:DIR` loads (the hf family serves them; SAM 3 declares "sam3_tracker")
    hf_models: Dict[str, Tuple[str, str]] = {}

    # ------------------------------------------------------------ checkpoints
    def checkpoint_signature(self, state: Dict[str, Any]) -> bool:
        """Whether a state dict's key names are this family's."""
        raise NotImplementedError

    # ------------------------------------------------------------ the decoder
    def owns(self, model: Any) -> bool:
        raise NotImplementedError

    def decoder(self, model: nn.Module) -> nn.Module:
        return model.mask_decoder

    def prompt_encoder(self, model: nn.Module) -> nn.Module:
        return model.prompt_encoder

    def transformer(self, model: nn.Module) -> nn.Module:
        return self.decoder(model).transformer

    def check(self, model: nn.Module) -> None:
        """Refuse a model whose decoder is not the standard two-layer, 256-d one."""
        layers = getattr(self.transformer(model), "layers", None)
        if layers is None or len(layers) != 2:
            raise ValueError(f"StableSam needs {self.title}'s standard mask decoder: a two-way transformer with 2 layers")

    def grid_inputs(self, args: Tuple, kwargs: Dict) -> Tuple[torch.Tensor, torch.Tensor]:
        """(image_embedding (B, C, h, w), image_pe (B, C, h, w)) from the transformer's call."""
        return args[0], args[1]

    def token_positions(self, model: nn.Module) -> Tuple[int, int, slice]:
        """(IoU token index, single-mask token index, slice of the output tokens)."""
        n = self.decoder(model).num_mask_tokens
        return 0, 1, slice(0, 1 + n)

    def prompt_token_start(self, model: nn.Module) -> int:
        """Index of the first of the prompt's sparse tokens (box corners, clicks), which follow
        the output tokens (HQ-SAM's HQ token included: it counts among its mask tokens)."""
        return self.token_positions(model)[2].stop

    def prompt_inputs(self, args: Tuple, kwargs: Dict) -> Dict[str, Any]:
        """A call to the prompt encoder as keyword arguments: points ((B, k, 2), (B, k)) or None,
        boxes (B, 4) or None, masks (B, 1, 4h, 4w) or None (SAM 1's `PromptEncoder.forward`)."""
        return {name: kwargs[name] if name in kwargs else (args[i] if len(args) > i else None)
                for i, name in enumerate(("points", "boxes", "masks"))}

    def with_prompt_embeddings(self, args: Tuple, kwargs: Dict, sparse: torch.Tensor,
                               dense: torch.Tensor) -> Tuple[Tuple, Dict]:
        """A call to the mask decoder with its sparse and dense prompt embeddings replaced."""
        args, kwargs = list(args), dict(kwargs)
        for i, (name, value) in enumerate((("sparse_prompt_embeddings", sparse), ("dense_prompt_embeddings", dense)),
                                          start=2):
            if len(args) > i:
                args[i] = value
            else:
                kwargs[name] = value
        return tuple(args), kwargs

    def decoder_masks(self, output: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        """(low-res mask logits (B, M, 4h, 4w), scores (B, M)) from the mask decoder's output."""
        return output[0], output[1]

    def decoder_width(self, model: nn.Module) -> int:
        return self.decoder(model).transformer_dim

    # --------------------------------------------------------------- images
    def encoder(self, model: nn.Module) -> nn.Module:
        return model.image_encoder

    def image_size(self, model: nn.Module) -> int:
        """Side of the square the encoder sees (SAM 1: 1024)."""
        return model.image_encoder.img_size

    def embedding_size(self, model: nn.Module) -> Tuple[int, int]:
        return tuple(self.prompt_encoder(model).image_embedding_size)

    def mask_input_size(self, model: nn.Module) -> Tuple[int, int]:
        """Size of the low-res mask logits (4x the embedding grid)."""
        h, w = self.embedding_size(model)
        return 4 * h, 4 * w

    def device(self, model: nn.Module) -> torch.device:
        return next(model.parameters()).device

    def encode(self, model: nn.Module, image: np.ndarray) -> Embedding:
        """The family's own preprocessing and image encoder on an (H, W, 3) uint8 RGB image."""
        raise NotImplementedError

    # -------------------------------------------------------------- prompts
    def frame(self, model: nn.Module) -> PaddedFrame:
        """The input frame's geometry (SAM 1: the long side resized to `image_size`, padded)."""
        return PaddedFrame(self.image_size(model))

    def prompt_transform(self, model: nn.Module) -> Any:
        """Maps original-image XY to the model's input frame: apply_coords(c, (H, W)),
        apply_boxes(b, (H, W)) on numpy arrays (SAM 1's ResizeLongestSide interface)."""
        return self.frame(model).transform()

    def low_res_target(self, mask: np.ndarray, model: nn.Module) -> torch.Tensor:
        """(H, W) mask -> (1, 1, *mask_input_size) soft mask in the low-res logit frame."""
        return self.frame(model).low_res_target(mask, self.mask_input_size(model))

    def decode(self, model: nn.Module, features: torch.Tensor, extras: Dict[str, List[torch.Tensor]],
               points: Optional[Tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor],
               mask_input: Optional[torch.Tensor], multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder for B prompts on one image (input frame), differentiable.
        Returns low-res logits (B, M, 4h, 4w) and IoU scores (B, M)."""
        raise NotImplementedError

    def predictor(self, model: Any) -> Any:
        """The family's Stable predictor for a StableSam `model`."""
        raise NotImplementedError

    def automatic_generator(self) -> type:
        """The family's "segment everything" class (a StableSamAutomaticMaskGenerator kind)."""
        raise TypeError(f"automatic masks (segment --everything) are not available for {self.title} models")

    # -------------------------------------------------------------- loading
    def load(self, variant: str, path: Any, device: torch.device) -> nn.Module:
        """The family's model `variant` with the official weights at `path`, in eval mode."""
        raise NotImplementedError
