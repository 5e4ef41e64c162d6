"""ONNX export of the prompt path (prompt encoder + mask decoder + plugins).

`StableSamOnnxModel` is Meta's `SamOnnxModel` (segment_anything.utils.onnx) run with the
Stable-SAM plugins engaged: the same six inputs and three outputs, so an existing SAM ONNX front
end can swap the file in, plus the routing weights α as a fourth output. The plugins run as
StableSam's hooks inside SAM's own decoder; while tracing they switch to out-of-place ops and
the deformable sampling becomes four ONNX Gathers (`modeling.deformable_sampling.is_tracing`).

Inputs (Meta's contract; B = 1 prompt, N points, dynamic):
  image_embeddings (1, 256, h, w) float; point_coords (1, N, 2) float, in the model's input
  frame (SamPredictor's `transform.apply_coords`); point_labels (1, N) float (1 foreground,
  0 background, 2 / 3 box corners, -1 padding: add a (0, 0) point with label -1 when there is
  no box); mask_input (1, 1, 4h, 4w) float; has_mask_input (1,) float; orig_im_size (2,)
  float (H, W).
Outputs: masks (1, M, H, W) logits at the original size, iou_predictions (1, M),
  low_res_masks (1, M, 4h, 4w) logits, alpha (1, 2) = (deformed, regular) feature weights,
  (0, 1) with the plugins off. M = 4 with `multimask`, else 1 by SamOnnxModel's rule: the
  single-mask output when point_coords holds 3 or more points (padding and box corners
  included), else the multimask output with the best predicted IoU.
"""

import inspect
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from segment_anything.utils.onnx import SamOnnxModel
from torch.nn import functional as F

from ..data.images import InputError
from ..fileio import atomic_write
from ..modeling import StableSam
from ..modeling.plugin_config import CLICKS_TO_SAM, OUTPUT_SELECTORS

INPUT_NAMES = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
OUTPUT_NAMES = ("masks", "iou_predictions", "low_res_masks", "alpha")
DYNAMIC_AXES = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
DEFAULT_OPSET = 17  # Meta's export script; LayerNormalization is an opset-17 op
OPSET_RANGE = (12, 20)  # what torch's TorchScript-based exporter writes
INSTALL_HINT = 'pip install "stable-segment-anything[onnx]"'
# torch's TorchScript-based exporter (what Meta's script used); torch >= 2.9 defaults to the
# dynamo-based one, which needs the onnxscript package.
TRACING_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
TOLERANCE = 1e-3  # `--verify` fails a float export whose outputs differ from PyTorch's by more


class OnnxUnavailable(InputError):
    """onnx / onnxruntime is not installed."""


def require(module: str):
    """Import `module` (onnx, onnxruntime, ...) or raise a one-line error naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OnnxUnavailable(f"{module.split('.')[0]} is not installed: {INSTALL_HINT}") from None


class StableSamOnnxModel(SamOnnxModel):
    """Meta's `SamOnnxModel` on a StableSam's Sam, with the plugins engaged when
    `model.plugins_enabled` (read at each call, so one object exports both ways)."""

    def __init__(self, model: StableSam, return_single_mask: bool = True, **kwargs) -> None:
        if not isinstance(model, StableSam):
            raise TypeError(f"StableSamOnnxModel takes a StableSam, got {type(model).__name__}")
        second_pass = ["the routing input 'fit'"] if model.config.reads_fit else []
        second_pass += [f"selector {model.config.selector!r}"] if model.config.selector in OUTPUT_SELECTORS else []
        second_pass += [f"refine {model.config.refine!r}"] if model.config.refine != "none" else []
        if second_pass:
            raise InputError(f"ONNX export does not support plugins with {' or '.join(second_pass)} "
                             "(each needs a second decoder pass); export the plugin without it")
        super().__init__(model.sam, return_single_mask, **kwargs)
        self.stable = model

    @torch.no_grad()
    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor, orig_im_size: torch.Tensor) -> Tuple:
        """SamOnnxModel's inputs -> its outputs + alpha (B, 2)."""
        self.stable.last_alpha = None
        with self.stable.engaged():
            if self.stable.config.selector in CLICKS_TO_SAM:  # prompts without box corners (labels 2, 3): SAM
                self.stable.prompts_with_box(((point_labels == 2) | (point_labels == 3)).any(dim=1))
            outputs = super().forward(image_embeddings, point_coords, point_labels, mask_input,
                                      has_mask_input, orig_im_size)
        alpha = self.stable.last_alpha
        if alpha is None:  # plugins off: the regular features only
            alpha = torch.stack((torch.zeros_like(point_coords[:, 0, 0]), torch.ones_like(point_coords[:, 0, 0])), 1)
        return (*outputs, alpha)

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """(B, M, 4h, 4w) logits -> (B, M, H, W): SamOnnxModel's, with the padding crop kept
        dynamic. segment-anything 1.0 (PyPI) crops with `int(...)`, which the tracer freezes
        to the example input's aspect ratio (segment-anything issue #56, fixed on its main
        branch after the release); slicing with the tensors themselves stays in the graph."""
        img = self.img_size
        masks = F.interpolate(masks, size=(img, img), mode="bilinear", align_corners=False)
        prepadded = self.resize_longest_image_size(orig_im_size, img)
        masks = masks[..., : prepadded[0], : prepadded[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def example_inputs(model: StableSam, num_points: int = 5, orig_size: Tuple[int, int] = (1500, 2250),
                   seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random inputs of the export's shapes (as Meta's export script makes them)."""
    g = torch.Generator().manual_seed(seed)
    pe = model.sam.prompt_encoder
    h, w = pe.image_embedding_size
    img = model.sam.image_encoder.img_size
    device = model.device
    inputs = {
        "image_embeddings": torch.randn(1, pe.embed_dim, h, w, generator=g),
        "point_coords": torch.randint(0, img, (1, num_points, 2), generator=g).float(),
        "point_labels": torch.randint(0, 4, (1, num_points), generator=g).float(),
        "mask_input": torch.randn(1, 1, 4 * h, 4 * w, generator=g),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor(orig_size, dtype=torch.float),
    }
    return {k: v.to(device) for k, v in inputs.items()}


def export_bytes(model: StableSam, opset: int = DEFAULT_OPSET, multimask: bool = False) -> bytes:
    """The ONNX file of `model` as it is now (plugins on or off), as bytes."""
    lo, hi = OPSET_RANGE
    if not lo <= opset <= hi:
        raise ValueError(f"opset {opset}: the exporter writes opsets {lo}..{hi}")
    onnx_model = StableSamOnnxModel(model, return_single_mask=not multimask).eval()
    inputs = example_inputs(model)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # SamOnnxModel's own tracer warnings (as Meta's script)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            onnx_model, tuple(inputs.values()), buf, **TRACING_EXPORTER, export_params=True,
            opset_version=opset, do_constant_folding=True, input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES), dynamic_axes=DYNAMIC_AXES,
        )
    return buf.getvalue()


def quantize_bytes(data: bytes) -> bytes:
    """onnxruntime's dynamic (weight-only, uint8) quantization, as Meta's export script does."""
    quantization = require("onnxruntime.quantization")
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="stablesam-onnx-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "quantized.onnx"
        src.write_bytes(data)
        root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process, logged on the root logger
        try:
            quantization.quantize_dynamic(src, dst, per_channel=False, reduce_range=False,
                                          weight_type=quantization.QuantType.QUInt8)
        finally:
            root.setLevel(level)
        return dst.read_bytes()


def export_onnx(model: StableSam, out: Path, opset: int = DEFAULT_OPSET, plugins: Optional[bool] = None,
                quantize: bool = False, multimask: bool = False) -> Path:
    """Export `model` (plugins on/off; default: as the model is) to `out`, atomically (a file
    already there is replaced and keeps its permission bits)."""
    onnx = require("onnx")
    was = model.plugins_enabled
    if plugins is not None:
        model.plugins_enabled = plugins
    try:
        data = export_bytes(model.eval(), opset, multimask)
    finally:
        model.plugins_enabled = was
    onnx.checker.check_model(onnx.load_model_from_string(data))
    if quantize:
        data = quantize_bytes(data)
    atomic_write(Path(out), lambda f: f.write(data))
    return Path(out)
