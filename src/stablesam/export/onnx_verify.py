"""Run an exported decoder in onnxruntime next to PyTorch: random prompts, max |Δ|, speed.

Prompts follow the ONNX contract (`stablesam.export.onnx_export`): coordinates in the model's input
frame, a box as its two corners with labels 2 and 3 after the clicks, and a (0, 0) padding
point with label -1 when there is no box (what SamPredictor's prompt encoder adds itself).
"""

import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..evaluation.metrics import mask_iou
from ..modeling import StableSam
from ..prompts.kinds import ONNX_KINDS
from .onnx_export import OUTPUT_NAMES, StableSamOnnxModel, require

PROMPT_KINDS = ONNX_KINDS
Inputs = Dict[str, np.ndarray]


def onnx_prompt(model: StableSam, kind: str, orig_size: Tuple[int, int], rng: np.random.Generator,
                num_points: int = 2, embedding: Optional[torch.Tensor] = None) -> Inputs:
    """One random prompt of `kind` (PROMPT_KINDS) for an image of `orig_size` (H, W), as the
    exported decoder's inputs (numpy float32). num_points: clicks (kinds points, box+points, mask).

    embedding: (1, C, h, w) image embedding; default N(0, 1) noise."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"prompt kind must be one of {PROMPT_KINDS}, got {kind!r}")
    img = model.sam.image_encoder.img_size
    pe = model.sam.prompt_encoder
    h, w = orig_size
    extent = np.array([w, h]) * img / max(h, w)  # the resized image inside the padded input
    coords, labels = np.zeros((0, 2)), np.zeros(0)
    if kind != "box":
        coords = rng.uniform(0, extent, (num_points, 2))
        labels = rng.integers(0, 2, num_points).astype(float)
    if "box" in kind:
        corners = np.sort(rng.uniform(0, extent, (2, 2)), axis=0)
        coords, labels = np.concatenate([coords, corners]), np.concatenate([labels, [2, 3]])
    else:
        coords, labels = np.concatenate([coords, [[0.0, 0.0]]]), np.concatenate([labels, [-1]])
    if embedding is None:
        embedding = torch.from_numpy(rng.standard_normal((1, pe.embed_dim, *pe.image_embedding_size)))
    mask_shape = (1, 1, *pe.mask_input_size)
    has_mask = kind == "mask"
    return {
        "image_embeddings": embedding.detach().cpu().numpy().astype(np.float32),
        "point_coords": coords[None].astype(np.float32),
        "point_labels": labels[None].astype(np.float32),
        "mask_input": (rng.standard_normal(mask_shape) * 4 if has_mask else np.zeros(mask_shape)).astype(np.float32),
        "has_mask_input": np.array([float(has_mask)], np.float32),
        "orig_im_size": np.array(orig_size, np.float32),
    }


def session(path: Path, threads: Optional[int] = None):
    """An onnxruntime CPU session on `path` (threads: default torch's intra-op thread count)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_both(onnx_model: StableSamOnnxModel, sess, inputs: Inputs) -> Tuple[List[np.ndarray], List[np.ndarray], float, float]:
    """PyTorch and onnxruntime outputs for one prompt, and the seconds each took."""
    tensors = [torch.from_numpy(v).to(onnx_model.stable.device) for v in inputs.values()]
    start = time.perf_counter()
    ref = [t.cpu().numpy() for t in onnx_model(*tensors)]
    mid = time.perf_counter()
    got = sess.run(None, inputs)
    end = time.perf_counter()
    return ref, got, mid - start, end - mid


def max_differences(ref: List[np.ndarray], got: List[np.ndarray]) -> Dict[str, float]:
    """Max |Δ| per output name; a shape mismatch counts as infinite."""
    return {name: float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
            for name, a, b in zip(OUTPUT_NAMES, ref, got)}


def verify(model: StableSam, path: Path, prompts: int = 20, seed: int = 0, multimask: bool = False,
           embedding: Optional[torch.Tensor] = None, sizes: Tuple[Tuple[int, int], ...] = ((300, 451), (451, 300))) -> Dict:
    """Run `path` and PyTorch (`model` as it is now: plugins on or off) on `prompts` random
    prompts: the kinds in turn, 1-5 clicks, image sizes in turn. Returns
    {"max_abs_diff": {output: max |Δ|}, "ms_per_prompt": {"onnxruntime", "pytorch"}, "mask_iou" (mean
    IoU of the binary masks of the two), "prompts"}.
    The first call of each runs once untimed (warm-up)."""
    rng = np.random.default_rng(seed)
    onnx_model = StableSamOnnxModel(model.eval(), return_single_mask=not multimask).eval()
    sess = session(path)
    worst: Dict[str, float] = {name: 0.0 for name in OUTPUT_NAMES}
    agreement: List[float] = []
    seconds = np.zeros(2)
    run_both(onnx_model, sess, onnx_prompt(model, "points", sizes[0], rng, 1, embedding))
    for i in range(prompts):
        kind = PROMPT_KINDS[i % len(PROMPT_KINDS)]
        inputs = onnx_prompt(model, kind, sizes[i % len(sizes)], rng, int(rng.integers(1, 6)), embedding)
        ref, got, t_torch, t_ort = run_both(onnx_model, sess, inputs)
        for name, d in max_differences(ref, got).items():
            worst[name] = max(worst[name], d)
        t = model.sam.mask_threshold
        agreement += [mask_iou(a > t, b > t) for a, b in zip(ref[0][0], got[0][0])]
        seconds += (t_ort, t_torch)
    ms = 1000 * seconds / max(prompts, 1)
    return {"max_abs_diff": worst, "ms_per_prompt": {"onnxruntime": ms[0], "pytorch": ms[1]},
            "mask_iou": float(np.mean(agreement)) if agreement else 1.0, "prompts": prompts}

