"""Hugging Face `transformers`: `SamModel` (SAM 1 weights), `Sam2Model` (SAM 2 / 2.1) and the
model types other families declare (`Backend.hf_models`: SAM 3's `Sam3TrackerModel`), loaded
from a local folder (`from_pretrained(DIR, local_files_only=True)`, never the network).

Its decoder blocks (`SamTwoWayAttentionBlock` / `Sam2TwoWayAttentionBlock`) call their
attention with query/key/value keywords and carry a prompt-batch axis: tokens are
(B, P, n, C) and image keys (B * P, 1, h*w, C); Sam2Model's tokens start with an object-score
token, as in `sam2`. `SamModel` resizes the long side and pads (as SAM 1), `Sam2Model` resizes
to a square (as SAM 2).
"""

import json
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ...modeling.family import Backend, Embedding, MissingExtra
from ...modeling.geometry import PaddedFrame, SquareFrame
from ...modeling.registry import families, register_family, require

# transformers model_type -> (model class, image processor class); other families add theirs
MODEL_TYPES = {"sam": ("SamModel", "SamImageProcessor"), "sam2": ("Sam2Model", "Sam2ImageProcessor")}


def model_types() -> Dict[str, Tuple[str, str]]:
    """Every transformers model type `hf:DIR` loads: SamModel's and Sam2Model's, then those the
    registered families declare."""
    out = dict(MODEL_TYPES)
    for backend in families():
        out.update(backend.hf_models)
    return out


def is_sam2(model: nn.Module) -> bool:
    """A SAM-2-style model (Sam2Model, Sam3TrackerModel): square frame, object-score token first,
    two high-res feature maps; SamModel is the only SAM-1-style one."""
    return model.config.model_type != "sam"


def transformers_class(name: str) -> Any:
    """A class of the installed transformers by name; one line naming the version when it has none."""
    import transformers

    cls = getattr(transformers, name, None)
    if cls is None:
        raise MissingExtra(f"transformers {transformers.__version__} has no {name}: "
                           f"pip install -U \"transformers>=5.0\" (SAM 3 needs >= 5.0)")
    return cls


@register_family
class HfBackend(Backend):
    family = "hf"
    title = "Hugging Face transformers SAM"
    extra = "hf"
    requires = ("transformers",)
    variants = {"hf": None}  # hf:DIR, the folder says which model it is
    spec_help = ('  hf:DIR                               transformers SamModel/Sam2Model/Sam3TrackerModel folder (pip install "stable-segment-anything[hf]")',)
    checkpoint_is_folder = True
    norm_name = "layer_norm1"
    attn_kwargs = ("query", "key", "value")
    encoder_prefix = "vision_encoder."

    def checkpoint_signature(self, state: Dict[str, Any]) -> bool:
        return any(k.startswith(("vision_encoder.", "mask_decoder.transformer.layers.0.layer_norm1")) for k in state)

    def owns(self, model: Any) -> bool:
        import transformers

        classes = tuple(c for c in (getattr(transformers, name, None) for name, _ in model_types().values()) if c)
        return isinstance(model, classes)

    def grid_inputs(self, args: Tuple, kwargs: Dict) -> Tuple[torch.Tensor, torch.Tensor]:
        return kwargs["image_embeddings"], kwargs["image_positional_embeddings"]

    def token_positions(self, model: nn.Module) -> Tuple[int, int, slice]:
        s = 1 if is_sam2(model) else 0  # Sam2Model: the object-score token comes first
        return s, s + 1, slice(0, s + 1 + self.decoder(model).num_mask_tokens)

    def decoder_width(self, model: nn.Module) -> int:
        return self.decoder(model).hidden_size

    def encoder(self, model: nn.Module) -> nn.Module:
        return model.vision_encoder

    def image_size(self, model: nn.Module) -> int:
        return int(self.prompt_encoder(model).input_image_size)

    def embedding_size(self, model: nn.Module) -> Tuple[int, int]:
        size = self.prompt_encoder(model).image_embedding_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def processor(self, model: nn.Module) -> Any:
        """The model's image processor, sized from its config (no preprocessor file needed)."""
        s = self.image_size(model)
        processor = transformers_class(model_types()[model.config.model_type][1])
        if is_sam2(model):
            return processor(size={"height": s, "width": s})
        return processor(size={"longest_edge": s}, pad_size={"height": s, "width": s})

    def encode(self, model: nn.Module, image: np.ndarray) -> Embedding:
        """The transformers image processor, then `get_image_embeddings`."""
        inputs = self.processor(model)(images=image, return_tensors="pt")
        with torch.no_grad():
            out = model.get_image_embeddings(inputs["pixel_values"].to(self.device(model)))
        original = tuple(int(v) for v in inputs["original_sizes"][0])
        if is_sam2(model):  # [high-res s0, high-res s1, embedding]
            s = self.image_size(model)
            return Embedding(out[-1], (s, s), original, {"high_res_feats": list(out[:-1])})
        return Embedding(out, tuple(int(v) for v in inputs["reshaped_input_sizes"][0]), original)

    def frame(self, model: nn.Module) -> PaddedFrame:
        return SquareFrame(self.image_size(model)) if is_sam2(model) else PaddedFrame(self.image_size(model))

    def decode(self, model: nn.Module, features: torch.Tensor, extras: Dict[str, List[torch.Tensor]],
               points: Optional[Tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor],
               mask_input: Optional[torch.Tensor], multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """The model's own forward on the embedding, the B prompts as its prompt batch P."""
        embeddings = [*extras["high_res_feats"], features] if is_sam2(model) else features
        if mask_input is not None and len(mask_input) > 1:
            raise ValueError("transformers SAM takes one mask_input per image")
        out = model(
            image_embeddings=embeddings,
            input_points=None if points is None else points[0][None],
            input_labels=None if points is None else points[1][None],
            input_boxes=None if boxes is None else boxes[None],
            input_masks=mask_input,
            multimask_output=multimask_output,
        )
        return out.pred_masks[0], out.iou_scores[0]

    def predictor(self, model: Any, **kwargs: Any) -> Any:
        from .predictor import StableHfPredictor

        return StableHfPredictor(model, **kwargs)

    def load(self, variant: str, path: Any, device: torch.device) -> nn.Module:
        """`hf:DIR`: a folder written by `save_pretrained` (config.json + weights)."""
        from ..official import CheckpointError, unpickling_reason

        require("hf")
        folder = Path(path)
        config = folder / "config.json"
        if not config.is_file():
            raise CheckpointError(f"{folder}: not a transformers model folder (no config.json; "
                                  "hf:DIR takes what save_pretrained writes)")
        try:
            saved = json.loads(config.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{config}: unreadable config ({e})") from None
        if not isinstance(saved, dict):
            raise CheckpointError(f"{config}: not a transformers config (a JSON {type(saved).__name__}, "
                                  "not an object)")
        model_type = saved.get("model_type")
        if model_type not in model_types():
            *others, last = [name for name, _ in model_types().values()]
            names = f"{', '.join(others)} or {last}"
            raise CheckpointError(f"{folder}: this is a transformers {model_type!r} model, not {names}")
        cls = transformers_class(model_types()[model_type][0])
        try:
            model = cls.from_pretrained(folder, local_files_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(f"{folder}: refused by torch.load(weights_only=True): its weights hold objects "
                                  f"other than tensors ({unpickling_reason(e)})") from None
        except Exception as e:  # transformers raises many types for a damaged folder
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{folder}: cannot load {cls.__name__}: {first}") from None
        return model.to(device).eval()
