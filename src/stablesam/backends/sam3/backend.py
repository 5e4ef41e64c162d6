"""SAM 3 (Meta's `sam3` package): the plugins on its interactive path, the "SAM 1 task" (boxes
and clicks for one object), which is SAM 2's two-way mask decoder on a 72 x 72 embedding grid
(1008 px input, patch 14). Its decoder's output tokens start with an object-score token (as in
SAM 2) and it reads two finer feature maps.

Two model objects are served: the SAM 3 image model (`Sam3Image`, built with
`enable_inst_interactivity=True`), whose interactive tracker is `model.inst_interactive_predictor
.model` and whose image encoder is the model's own backbone; and that tracker alone
(`Sam3TrackerBase`), which decodes cached embeddings and encodes images when it was built with a
backbone. SAM 3's concept prompts (text, exemplars) are not this family's business.
"""

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ...modeling.family import Backend, Embedding, decode_sam2_style
from ...modeling.geometry import SquareFrame
from ...modeling.registry import register_family, require
from .tracker import tracker_of

VARIANTS = {"sam3": "sam3"}  # sam3:PATH, the official sam3.pt
TRACKER_PREFIX, DETECTOR_PREFIX = "tracker.", "detector."  # the official checkpoint's two halves
INTERACTIVE_PREFIX = "inst_interactive_predictor.model."  # where the tracker sits in the image model
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"  # the text encoder's tokenizer (not in the sam3 wheel)
BPE_ENV = "STABLESAM_SAM3_BPE"


@contextmanager
def without_cuda_defaults() -> Iterator[None]:
    """sam3 0.1.4 precomputes position encodings with device="cuda" while building (its
    PositionEmbeddingSine and detector decoder); on a machine without CUDA those tensors are
    made on the CPU instead, for the duration of the build only."""
    if torch.cuda.is_available():
        yield
        return
    originals = {name: getattr(torch, name) for name in ("zeros", "arange")}

    def on_cpu(make):
        def made(*args: Any, device: Any = None, **kwargs: Any) -> torch.Tensor:
            if device is not None and torch.device(device).type == "cuda":
                device = "cpu"
            return make(*args, device=device, **kwargs)
        return made

    for name, make in originals.items():
        setattr(torch, name, on_cpu(make))
    try:
        yield
    finally:
        for name, make in originals.items():
            setattr(torch, name, make)


def tokenizer_file(checkpoint: Path) -> Path:
    """SAM 3's BPE vocabulary: $STABLESAM_SAM3_BPE, else `bpe_simple_vocab_16e6.txt.gz` next to
    the checkpoint, else where the sam3 package looks for it; never downloaded."""
    import sam3

    candidates = [os.environ.get(BPE_ENV), checkpoint.parent / BPE_NAME,
                  Path(sam3.__file__).parent.parent / "assets" / BPE_NAME]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    from ..official import CheckpointError

    raise CheckpointError(f"SAM 3 needs its tokenizer file {BPE_NAME} (the sam3 wheel does not ship it): "
                          f"put it next to {checkpoint} or set {BPE_ENV}=FILE")


def image_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The official checkpoint's keys as the image model's (what sam3's own loader does):
    `detector.` dropped, `tracker.` -> `inst_interactive_predictor.model.`."""
    out = {}
    for key, value in state.items():
        if key.startswith(DETECTOR_PREFIX):
            out[key[len(DETECTOR_PREFIX):]] = value
        elif key.startswith(TRACKER_PREFIX):
            out[INTERACTIVE_PREFIX + key[len(TRACKER_PREFIX):]] = value
    return out


class EncoderParts(nn.Module):
    """What a SAM 3 image embedding depends on, as one module (for embedding-cache keys): the
    image backbone, the decoder's two high-res projections and the no-memory embedding."""

    def __init__(self, backbone: nn.Module, tracker: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.conv_s0, self.conv_s1 = tracker.sam_mask_decoder.conv_s0, tracker.sam_mask_decoder.conv_s1
        self.no_mem_embed = tracker.no_mem_embed


@register_family
class Sam3Backend(Backend):
    family = "sam3"
    title = "SAM 3"
    extra = "sam3"
    requires = ("sam3",)
    variants = VARIANTS
    spec_help = ('  sam3:PATH                            SAM 3 (interactive path) from sam3.pt   (pip install "stable-segment-anything[sam3]")',)
    encoder_prefix = "backbone."
    hf_models = {"sam3_tracker": ("Sam3TrackerModel", "Sam3ImageProcessor")}  # hf:DIR (transformers >= 5.0)

    def checkpoint_signature(self, state: Dict[str, Any]) -> bool:
        return any(k.startswith(TRACKER_PREFIX + "sam_mask_decoder.") for k in state) or \
            any(k.startswith(INTERACTIVE_PREFIX + "sam_mask_decoder.") for k in state)

    def owns(self, model: Any) -> bool:
        from sam3.model.sam3_image import Sam3Image
        from sam3.model.sam3_tracker_base import Sam3TrackerBase

        if isinstance(model, Sam3Image):
            return model.inst_interactive_predictor is not None
        return isinstance(model, Sam3TrackerBase)

    def check(self, model: nn.Module) -> None:
        from sam3.model.sam3_image import Sam3Image

        if isinstance(model, Sam3Image) and model.inst_interactive_predictor is None:
            raise ValueError("StableSam needs SAM 3's interactive path: build the image model with "
                             "enable_inst_interactivity=True")
        super().check(model)

    def decoder(self, model: nn.Module) -> nn.Module:
        return tracker_of(model).sam_mask_decoder

    def prompt_encoder(self, model: nn.Module) -> nn.Module:
        return tracker_of(model).sam_prompt_encoder

    def token_positions(self, model: nn.Module) -> Tuple[int, int, slice]:
        decoder = self.decoder(model)
        s = 1 if decoder.pred_obj_scores else 0  # the object-score token comes first
        return s, s + 1, slice(0, s + 1 + decoder.num_mask_tokens)

    def image_size(self, model: nn.Module) -> int:
        return int(tracker_of(model).image_size)

    def encoder(self, model: nn.Module) -> nn.Module:
        tracker = tracker_of(model)
        backbone = model.backbone if tracker is not model else tracker.backbone
        if backbone is None:
            raise ValueError("this SAM 3 tracker has no image encoder (built without a backbone): "
                             "decode cached embeddings, or load the image model (sam3:PATH)")
        return EncoderParts(backbone, tracker)

    def frame(self, model: nn.Module) -> SquareFrame:
        return SquareFrame(self.image_size(model))

    @torch.no_grad()
    def encode(self, model: nn.Module, image: np.ndarray) -> Embedding:
        """SAM 3's interactive image path: its predictor's transforms (resize to 1008 x 1008,
        normalise), the image backbone's SAM-2-style features with the decoder's two high-res
        projections, and the no-memory embedding added to the 72 x 72 map (as
        `Sam3Processor.set_image` + `Sam3Image.predict_inst` do)."""
        from sam3.model.utils.sam1_utils import SAM2Transforms

        parts = self.encoder(model)
        tracker = tracker_of(model)
        transforms = SAM2Transforms(resolution=tracker.image_size, mask_threshold=0.0)  # as the predictor's
        x = transforms(image)[None].to(self.device(model))
        out = dict(parts.backbone.forward_image(x)["sam2_backbone_out"])
        fpn = list(out["backbone_fpn"])
        fpn[0], fpn[1] = parts.conv_s0(fpn[0]), parts.conv_s1(fpn[1])
        out["backbone_fpn"] = fpn
        _, feats, _, sizes = tracker._prepare_backbone_features(out)
        feats[-1] = feats[-1] + tracker.no_mem_embed
        maps = [f.permute(1, 2, 0).view(1, -1, *size) for f, size in zip(feats, sizes)]
        s = self.image_size(model)
        return Embedding(maps[-1], (s, s), image.shape[:2], {"high_res_feats": maps[:-1]})

    def decode(self, model: nn.Module, features: torch.Tensor, extras: Dict[str, List[torch.Tensor]],
               points: Optional[Tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor],
               mask_input: Optional[torch.Tensor], multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """The SAM 1-task predictor's decoder call (box as two points labelled 2 and 3)."""
        tracker = tracker_of(model)
        return decode_sam2_style(tracker.sam_prompt_encoder, tracker.sam_mask_decoder, features,
                                 extras["high_res_feats"], points, boxes, mask_input, multimask_output)

    def predictor(self, model: Any, **kwargs: Any) -> Any:
        from .predictor import StableSam3Predictor

        return StableSam3Predictor(model, **kwargs)

    def automatic_generator(self) -> type:
        from .automatic import StableSam3AutomaticMaskGenerator

        return StableSam3AutomaticMaskGenerator

    def build_tracker(self, with_backbone: bool = False) -> nn.Module:
        """A random-init SAM 3 interactive tracker from the package's own builder (eval mode, CPU);
        with_backbone adds the image backbone (vision only, no text encoder)."""
        require("sam3")
        from sam3.model_builder import build_tracker

        with without_cuda_defaults():
            return build_tracker(apply_temporal_disambiguation=False, with_backbone=with_backbone).eval()

    def build(self, variant: str, bpe_path: Optional[Path] = None) -> nn.Module:
        """A random-init SAM 3 image model with its interactive path (the package's builder,
        `load_from_HF=False`: nothing is downloaded)."""
        require("sam3")
        from sam3.model_builder import build_sam3_image_model

        with without_cuda_defaults():
            return build_sam3_image_model(bpe_path=None if bpe_path is None else str(bpe_path), device="cpu",
                                          checkpoint_path=None, load_from_HF=False,
                                          enable_inst_interactivity=True, eval_mode=True)

    def load(self, variant: str, path: Any, device: torch.device) -> nn.Module:
        """`sam3:PATH`: the official `sam3.pt` ({"model": ...} or the state dict), read with
        weights_only=True; its `tracker.` keys become `inst_interactive_predictor.model.`."""
        from ..official import CheckpointError, describe_mismatch, read_weights, sam_state_dict

        require("sam3")
        if variant not in VARIANTS:
            raise CheckpointError(f"unknown SAM 3 model {variant!r}; accepted: {', '.join(VARIANTS)}")
        path = Path(path)
        state = sam_state_dict(read_weights(path), path)
        if not self.checkpoint_signature(state):
            from ...modeling.registry import checkpoint_family, family_title

            found = checkpoint_family(state)
            what = f"a {family_title(found)} checkpoint" if found else "not a SAM 3 checkpoint (no tracker.sam_mask_decoder.* keys)"
            raise CheckpointError(f"{path}: {what}, not SAM 3")
        if not any(k.startswith(INTERACTIVE_PREFIX) for k in state):
            state = image_state_dict(state)
        model = self.build(variant, tokenizer_file(path))
        expected = set(model.state_dict())
        problem = describe_mismatch(model, {k: v for k, v in state.items() if k in expected}, variant, path)
        if problem:
            raise CheckpointError(problem)
        model.load_state_dict(state, strict=False)  # as sam3's loader: keys the image model lacks are left
        return model.to(device).eval()
