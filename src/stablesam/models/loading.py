"""`load_model`: a StableSam from an official checkpoint (any family) or the embedded model,
with a plugin file or as plain SAM."""

from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ..backends.official import CheckpointError, PathLike
from ..modeling.registry import backend_for_head, get_backend
from ..modeling import StableSam
from .embedded import EMBEDDED
from .files import attach_plugin, load_sam_file


def load_model(
    checkpoint: Optional[PathLike] = None,
    model_type: Optional[str] = None,
    plugin: Optional[PathLike] = None,
    device: Optional[Union[str, torch.device]] = None,
    force: bool = False,
) -> StableSam:
    """Build a StableSam.

    With an official checkpoint and `model_type` (vit_b, vit_l, vit_h; or another family's SPEC
    head: hq_vit_b, sam2.1_hiera_t, hf with a folder, ...): that SAM, with the plugin file if
    given, else with `plugins_enabled = False` (plain SAM). With no checkpoint:
    the embedded tiny model (its Stable-SAM plugin unless `plugin` names another file).
    """
    from ..limits import checked_device

    device = checked_device(device)  # an unknown or absent device: InputError
    if checkpoint is None:
        sam, default_plugin = load_base("tiny-stable-sam", None, device)
        plugin = plugin if plugin is not None else default_plugin
    else:
        if model_type is None:
            raise CheckpointError(f"model_type is needed with a checkpoint; accepted: "
                                  f"{', '.join(get_backend('sam1').variants)}")
        sam = load_official(model_type, checkpoint, device)
    return wrap_sam(sam, plugin, force)


def load_official(head: str, path: PathLike, device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The SAM of a registered family's SPEC head (vit_b, hq_vit_b, sam2.1_hiera_t, hf, ...) with
    the official weights at `path`; an unknown head is SAM 1's error (the accepted model types)."""
    backend = backend_for_head(head) or get_backend("sam1")
    return backend.load(head, path, torch.device(device))


def load_base(head: str, checkpoint: Optional[PathLike], device: Union[str, torch.device] = "cpu",
              ) -> Tuple[nn.Module, Optional[Path]]:
    """(SAM, its own plugin file or None) for any SPEC head but grabcut: the embedded model
    (tiny-sam; tiny-stable-sam with its plugin), a stablesam SAM file (sam), or an official
    checkpoint of a registered family. The one dispatcher `build_model` and `load_model` use."""
    if head in EMBEDDED:
        from .embedded import load_embedded_sam, named_plugin_file  # looked up at call time (tests replace it)

        sam, default_plugin = load_embedded_sam(device)
        if head == "tiny-stable-sam":
            return sam, default_plugin
        return sam, named_plugin_file(head)
    if head == "sam":
        return load_sam_file(checkpoint, device), None
    return load_official(head, checkpoint, device), None


def wrap_sam(sam: torch.nn.Module, plugin: Optional[PathLike] = None, force: bool = False) -> StableSam:
    """Stable-SAM with the plugin file, or (no plugin) the same wrapper serving as plain SAM."""
    if plugin is not None:
        return attach_plugin(sam, plugin, force=force)
    model = StableSam(sam)
    model = model.to(model.device)
    model.plugins_enabled = False
    return model
