"""Numeric precision of the encoder, training and evaluation (`--precision fp32|bf16|fp16`).

fp32 runs as always. bf16 / fp16 run the frozen SAM under `torch.autocast`; the plugins'
offsets and bilinear sampling stay in fp32 (`DeformableSamplingPlugin` leaves autocast for
them: bf16 positions are off by up to a quarter of a cell at the far side of a 64-cell grid).
Embeddings are cached as float16 on CUDA by default (half the disk) and always handed out as
float32.
"""

import contextlib
from typing import ContextManager, Union

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_precision(text: str) -> str:
    """'fp32' | 'bf16' | 'fp16' (ValueError naming the accepted values otherwise)."""
    if text not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {text!r}")
    return text


def device_type(device: Union[str, torch.device]) -> str:
    """'cuda' / 'cpu' / ... of a device or its name ('cuda:1' -> 'cuda')."""
    return torch.device(device).type


def autocast(device: Union[str, torch.device], precision: str) -> ContextManager:
    """`torch.autocast` to the precision's dtype on the device's type; nothing for fp32."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type(device), dtype=DTYPES[precision])


def autocast_enabled(kind: str) -> bool:
    """Whether autocast is on for device type `kind` here (across torch 2.x signatures)."""
    try:
        return torch.is_autocast_enabled(kind)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() if kind == "cuda" else torch.is_autocast_cpu_enabled()


def default_cache_dtype(device: Union[str, torch.device]) -> torch.dtype:
    """How embeddings are stored when no dtype is asked for: float16 on CUDA, float32 elsewhere."""
    return torch.float16 if device_type(device) == "cuda" else torch.float32


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(error, oom)) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def oom_message(stage: str, batch_size: int, option: str = "--batch-size") -> str:
    """The one line a CUDA out-of-memory error becomes: where, and the batch size to try."""
    smaller = max(1, batch_size // 2)
    if batch_size <= 1:
        return (f"out of GPU memory in {stage} at {option} 1: try --precision bf16, a smaller model, or a GPU "
                "with more memory")
    return f"out of GPU memory in {stage} at {option} {batch_size}: try {option} {smaller} (or --precision bf16)"
