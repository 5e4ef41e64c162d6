"""Official checkpoints of every SAM family: read with torch.load(weights_only=True), matched
against the model key by key, and refused with the reason (another family, another variant)."""

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..modeling.registry import checkpoint_family, family_title, get_backend

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint or plugin file that cannot be used, with the reason."""


def unpickling_reason(e: Exception) -> str:
    """The line of a weights_only refusal that names what was refused (torch's message is many
    lines of advice around it)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    reason = (named or lines or [type(e).__name__])[0]
    return reason.split("error: ", 1)[-1][:200]


def check_size(path: PathLike, limit: int, kind: str) -> None:
    """Refuse a file over `limit` bytes before reading it."""
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if size > limit:
        raise CheckpointError(f"{path}: {size / 2**20:,.0f} MB is too large for {kind} (the limit is "
                              f"{limit / 2**20:.0f} MB); not read")


def read_weights(path: PathLike, device: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """torch.load with weights_only=True and map_location=device, errors made readable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True): it holds objects other than "
            f"tensors and plain containers ({unpickling_reason(e)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt file?): {first}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def sam_state_dict(obj: Dict[str, Any], path: PathLike) -> Dict[str, torch.Tensor]:
    """The SAM state dict inside a checkpoint (Meta's files are the state dict itself)."""
    if not any(k.startswith("mask_decoder.") for k in obj):
        for key in ("model", "state_dict"):  # common wrappers of fine-tuned checkpoints
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a SAM state dict (non-tensor entries such as {bad[:3]})")
    return obj


def describe_mismatch(model: torch.nn.Module, state: Dict[str, torch.Tensor], model_type: str, path: PathLike,
                      widths: Optional[Dict[int, str]] = None) -> Optional[str]:
    """A readable account of why `state` does not fit `model`, or None if it fits; `widths`
    (image-encoder width -> model type, the family's `encoder_widths`) adds which model type the
    checkpoint looks like."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or shapes):
        return None
    lines = [f"{path} does not fit a {model_type} model:"]
    width = state.get("image_encoder.patch_embed.proj.weight")
    widths = widths or {}
    if width is not None and widths.get(width.shape[0], model_type) != model_type:
        lines.append(
            f"  it looks like a {widths[width.shape[0]]} checkpoint "
            f"(image encoder width {width.shape[0]}); pass that model type instead"
        )
    if not any(k.startswith("mask_decoder.") for k in state):
        lines.append("  it has no mask_decoder.* weights: not a SAM checkpoint")
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            lines.append(f"  {len(items)} {title}: {', '.join(items[:5])}{more}")
    return "\n".join(lines)


def load_family_weights(model: torch.nn.Module, path: PathLike, family: str, variant: str,
                        device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """Load an official checkpoint of `family` (a state dict, or {"model": state dict} as SAM 2's)
    into `model`, strictly; a checkpoint of another family or variant is refused saying which."""
    state = sam_state_dict(read_weights(path, device), path)
    found = checkpoint_family(state)
    if found is not None and found != family:
        raise CheckpointError(f"{path}: this is a {family_title(found)} checkpoint, not {family_title(family)} ({variant})")
    problem = describe_mismatch(model, state, variant, path, get_backend(family).encoder_widths)
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(state)
    return model.to(device).eval()
