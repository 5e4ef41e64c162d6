"""stablesam's own weight files: plugin files, decoder-tuned weights (the DT baseline) and SAM
files (architecture + weights, the embedded model's format), each tied to the base SAM it
belongs to by a fingerprint of its weights."""

import hashlib
from typing import Any, Dict, Optional, Union

import torch
from segment_anything.modeling import Sam

from ..modeling.registry import backend_for, family_title, get_backend
from ..backends.official import CheckpointError, PathLike, check_size, describe_mismatch, read_weights
from ..fileio import atomic_torch_save
from ..modeling import PluginConfig, StableSam

PLUGIN_FORMAT = "stablesam-plugin"
PLUGIN_FORMAT_VERSION = 1
PLUGIN_MAX_BYTES = 64 * 2**20  # plugin files are a few hundred kB
DECODER_MAX_BYTES = 512 * 2**20  # a tuned SAM decoder (and prompt encoder) is tens of MB


def weights_fingerprint(module: torch.nn.Module, sample_prefix: str = "image_encoder.") -> str:
    """A short hash of a module's weights.

    Tensors are hashed in full, except those under `sample_prefix` (SAM's image encoder, up to
    600 M parameters), which are hashed by name, shape and an evenly spaced sample of values.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu", torch.float32).flatten()
        if name.startswith(sample_prefix) and t.numel() > 4096:
            t = t[:: t.numel() // 4096]
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def base_fingerprint(sam: torch.nn.Module) -> str:
    """Identity of a SAM's weights (any family): what a plugin file records as its base."""
    return weights_fingerprint(sam, sample_prefix=backend_for(sam).encoder_prefix)


def encoder_fingerprint(sam: torch.nn.Module) -> str:
    """Identity of a SAM's image encoder: what an image embedding depends on."""
    return weights_fingerprint(backend_for(sam).encoder(sam), sample_prefix="")


def save_plugin(model: StableSam, path: PathLike, base_name: str, meta: Optional[Dict[str, Any]] = None) -> None:
    """Write the plugin weights, their config and the base model's identity (a few hundred kB)."""
    atomic_torch_save(
        {
            "format": PLUGIN_FORMAT,
            "format_version": PLUGIN_FORMAT_VERSION,
            "config": model.config.to_dict(),
            "state_dict": model.plugin_state_dict(),
            "base": {"name": base_name, "fingerprint": base_fingerprint(model.sam), "family": model.family},
            "meta": dict(meta or {}),
        },
        path,
    )


def read_plugin(path: PathLike) -> Dict[str, Any]:
    """Read and validate a plugin file; returns its dict (config, state_dict, base, meta)."""
    check_size(path, PLUGIN_MAX_BYTES, "a plugin file")
    obj = read_weights(path, "cpu")
    if obj.get("format") != PLUGIN_FORMAT:
        raise CheckpointError(f"{path}: not a stablesam plugin file (no '{PLUGIN_FORMAT}' marker)")
    check_fields(obj, path, "plugin", {"config": dict, "state_dict": dict, "base": dict, "meta": dict})
    if obj.get("format_version", 0) > PLUGIN_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: plugin format version {obj['format_version']} is newer than this stablesam "
            f"understands ({PLUGIN_FORMAT_VERSION}); upgrade stablesam"
        )
    try:
        obj["config"] = PluginConfig.from_saved(obj["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad plugin config: {e}") from None
    from ..limits import nonfinite_weight

    if nonfinite_weight(obj["state_dict"]):
        raise CheckpointError(f"{path}: plugin weight {nonfinite_weight(obj['state_dict'])!r} holds NaN or infinite "
                              "values (a damaged file, or a training run that diverged)")
    return obj


def check_fields(obj: Dict[str, Any], path: PathLike, kind: str, types: Dict[str, type]) -> None:
    """Refuse a file whose format_version is no whole number or whose fields (those present)
    have other types than `types` (a damaged or hand-made file)."""
    version = obj.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: damaged {kind} file: format_version is {version!r}, not a whole number")
    for key, kind_of in types.items():
        if key in obj and not isinstance(obj[key], kind_of):
            raise CheckpointError(f"{path}: damaged {kind} file: {key!r} is a {type(obj[key]).__name__}, "
                                  f"not a {kind_of.__name__}")
    family = obj.get("base", {}).get("family", "sam1")
    if not isinstance(family, str):
        raise CheckpointError(f"{path}: damaged {kind} file: base family is {family!r}, not a name")


def check_base(sam: torch.nn.Module, obj: Dict[str, Any], path: PathLike, force: bool, why: str) -> None:
    """Refuse weights recorded for another SAM family (always) or for other base weights than
    `sam`'s (unless force). Files from before families were recorded are SAM 1's."""
    base = obj.get("base", {})
    family, own = base.get("family", "sam1"), backend_for(sam).family
    if family != own:
        raise CheckpointError(
            f"{path} was trained for a {family_title(family)} model ({base.get('name', '?')!r}), "
            f"not {family_title(own)}: plugins only help the SAM family and weights they were trained on"
        )
    fingerprint = base_fingerprint(sam)
    if not force and base.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{path} was trained for base model {base.get('name', '?')!r} (fingerprint "
            f"{base.get('fingerprint')}), but this SAM's weights have fingerprint {fingerprint}; "
            f"{why}. Use force=True (CLI: --force-plugin) to load anyway."
        )


def attach_plugin(sam: torch.nn.Module, path: PathLike, force: bool = False) -> StableSam:
    """Wrap `sam` in a StableSam carrying the plugin weights from `path`.

    Refuses a plugin trained for other base weights unless force=True.
    """
    plugin = read_plugin(path)
    check_base(sam, plugin, path, force, "plugins only help the SAM they were trained on")
    model = StableSam(sam, plugin["config"])
    try:
        model.load_plugin_state_dict(plugin["state_dict"])
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    return model.to(model.device)


DECODER_FORMAT = "stablesam-decoder"


def save_decoder(sam: torch.nn.Module, path: PathLike, base_name: str, base_fingerprint_: str,
                 meta: Optional[Dict[str, Any]] = None, prompt_encoder: bool = False) -> None:
    """Write decoder-tuned weights (the DT baseline; with prompt_encoder, the prompt encoder's
    too, format version 2) with the identity of the SAM they started from."""
    backend = backend_for(sam)

    def cpu_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    obj = {
        "format": DECODER_FORMAT,
        "format_version": 2 if prompt_encoder else 1,
        "state_dict": cpu_state(backend.decoder(sam)),
        "base": {"name": base_name, "fingerprint": base_fingerprint_, "family": backend.family},
        "meta": dict(meta or {}),
    }
    if prompt_encoder:
        obj["prompt_encoder"] = cpu_state(backend.prompt_encoder(sam))
    atomic_torch_save(obj, path)


def load_decoder(sam: torch.nn.Module, path: PathLike, force: bool = False) -> None:
    """Load decoder-tuned weights into `sam` in place (refuses another base unless force)."""
    check_size(path, DECODER_MAX_BYTES, "a decoder file")
    obj = read_weights(path, "cpu")
    if obj.get("format") != DECODER_FORMAT:
        raise CheckpointError(f"{path}: not a stablesam decoder file (no '{DECODER_FORMAT}' marker)")
    check_fields(obj, path, "decoder", {"state_dict": dict, "prompt_encoder": dict, "base": dict, "meta": dict})
    version = obj.get("format_version", 1)
    if not isinstance(version, int) or version > 2:
        raise CheckpointError(f"{path}: decoder format version {version!r} is not one this stablesam reads (1, 2); "
                              "upgrade stablesam")
    check_base(sam, obj, path, force, "decoder weights belong to the SAM they were tuned from")
    from ..limits import nonfinite_weight

    bad = nonfinite_weight({**obj["state_dict"], **obj.get("prompt_encoder", {})})
    if bad:
        raise CheckpointError(f"{path}: decoder weight {bad!r} holds NaN or infinite values (a damaged file, or a "
                              "training run that diverged)")
    try:
        backend_for(sam).decoder(sam).load_state_dict(obj["state_dict"])
        if "prompt_encoder" in obj:
            backend_for(sam).prompt_encoder(sam).load_state_dict(obj["prompt_encoder"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: decoder weights do not fit this SAM: {str(e).splitlines()[0]}") from None


SAM_FILE_FORMAT = "stablesam-sam"


def save_sam_file(sam: Sam, arch: Dict[str, Any], path: PathLike, meta: Optional[Dict[str, Any]] = None,
                  dtype: Optional[str] = None) -> None:
    """A self-describing SAM file: architecture dict + state dict (the embedded model's format).

    dtype "float16" stores floating-point weights at half size; loading casts them back to the
    model's float32 (what the file then holds is exactly what every load computes with).
    """
    if dtype not in (None, "float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    cast = torch.float16 if dtype == "float16" else None

    def stored(v: torch.Tensor) -> torch.Tensor:
        v = v.detach().cpu()
        return v.to(cast) if cast is not None and v.is_floating_point() else v

    atomic_torch_save(
        {"format": SAM_FILE_FORMAT, "format_version": 1, "arch": dict(arch),
         "state_dict": {k: stored(v) for k, v in sam.state_dict().items()}, "meta": dict(meta or {})},
        path,
    )


def load_sam_file(path: PathLike, device: Union[str, torch.device] = "cpu") -> Sam:
    """Build the Sam a stablesam SAM file describes and load its weights."""
    from ..modeling.small_sam import build_small_sam

    obj = read_weights(path, device)
    if obj.get("format") != SAM_FILE_FORMAT:
        raise CheckpointError(f"{path}: not a stablesam SAM file (no '{SAM_FILE_FORMAT}' marker)")
    try:
        sam = build_small_sam(obj["arch"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad architecture {obj.get('arch')}: {e}") from None
    problem = describe_mismatch(sam, obj["state_dict"], "described by the file", path, get_backend("sam1").encoder_widths)
    if problem:
        raise CheckpointError(problem)
    sam.load_state_dict(obj["state_dict"])
    return sam.to(device).eval()
