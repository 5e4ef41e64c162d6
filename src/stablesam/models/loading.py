"""`load_model`: a StableSam from an official checkpoint (any family) or the embedded model,
with a plugin file or as plain SAM."""

from typing import Optional, Union

import torch

from ..backends.official import MODEL_TYPES, CheckpointError, PathLike, load_official_sam
from ..modeling import StableSam
from .files import attach_plugin


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
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if checkpoint is None:
        from .embedded import load_embedded_sam

        sam, default_plugin = load_embedded_sam(device)
        plugin = plugin if plugin is not None else default_plugin
    else:
        if model_type is None:
            raise CheckpointError(f"model_type is needed with a checkpoint; accepted: {', '.join(MODEL_TYPES)}")
        from .spec import FAMILY_BASES  # hq_vit_b, sam2.1_hiera_t, hf, ...

        if model_type in FAMILY_BASES:
            from ..backends import get_backend

            sam = get_backend(FAMILY_BASES[model_type]).load(model_type, checkpoint, device)
        else:
            sam = load_official_sam(checkpoint, model_type, device)
    return wrap_sam(sam, plugin, force)


def wrap_sam(sam: torch.nn.Module, plugin: Optional[PathLike] = None, force: bool = False) -> StableSam:
    """Stable-SAM with the plugin file, or (no plugin) the same wrapper serving as plain SAM."""
    if plugin is not None:
        return attach_plugin(sam, plugin, force=force)
    model = StableSam(sam)
    model = model.to(model.device)
    model.plugins_enabled = False
    return model
