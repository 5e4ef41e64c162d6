"""Reading official SAM checkpoints, plugin files, and `load_model`."""

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from ..backends import backend_for, family_title
from ..modeling import PluginConfig, StableSam

PathLike = Union[str, os.PathLike]
MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
ENCODER_WIDTH = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
PLUGIN_FORMAT = "stablesam-plugin"
PLUGIN_FORMAT_VERSION = 1
PLUGIN_MAX_BYTES = 64 * 2**20  # plugin files are a few hundred kB
DECODER_MAX_BYTES = 512 * 2**20  # a tuned SAM decoder (and prompt encoder) is tens of MB


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


def describe_mismatch(model: Sam, state: Dict[str, torch.Tensor], model_type: str, path: PathLike) -> Optional[str]:
    """A readable account of why `state` does not fit `model`, or None if it fits."""
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
    if width is not None and ENCODER_WIDTH.get(width.shape[0], model_type) != model_type:
        lines.append(
            f"  it looks like a {ENCODER_WIDTH[width.shape[0]]} checkpoint "
            f"(image encoder width {width.shape[0]}); pass that model type instead"
        )
    if not any(k.startswith("mask_decoder.") for k in state):
        lines.append("  it has no mask_decoder.* weights: not a SAM checkpoint")
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            lines.append(f"  {len(items)} {title}: {', '.join(items[:5])}{more}")
    return "\n".join(lines)


def checkpoint_family(state: Dict[str, Any]) -> Optional[str]:
    """Which SAM family a state dict's key names say it is (None: none of them)."""
    if any(k.startswith("sam_mask_decoder.") for k in state):
        return "sam2"
    if "mask_decoder.hf_token.weight" in state:
        return "hq"
    if any(k.startswith(("vision_encoder.", "mask_decoder.transformer.layers.0.layer_norm1")) for k in state):
        return "hf"
    if any(k.startswith("mask_decoder.") for k in state):
        return "sam1"
    return None


def load_official_sam(path: PathLike, model_type: str, device: Union[str, torch.device] = "cpu") -> Sam:
    """A Sam built by Meta's builder for `model_type` with the official `.pth` at `path`."""
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"unknown model type {model_type!r}; accepted: {', '.join(MODEL_TYPES)}")
    return load_family_weights(sam_model_registry[model_type](), path, "sam1", model_type, device)


def load_family_weights(model: torch.nn.Module, path: PathLike, family: str, variant: str,
                        device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """Load an official checkpoint of `family` (a state dict, or {"model": state dict} as SAM 2's)
    into `model`, strictly; a checkpoint of another family or variant is refused saying which."""
    state = sam_state_dict(read_weights(path, device), path)
    found = checkpoint_family(state)
    if found is not None and found != family:
        raise CheckpointError(f"{path}: this is a {family_title(found)} checkpoint, not {family_title(family)} ({variant})")
    problem = describe_mismatch(model, state, variant, path)
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(state)
    return model.to(device).eval()


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


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            f"{why}. Use force=True (CLI: --force) to load anyway."
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
    problem = describe_mismatch(sam, obj["state_dict"], "described by the file", path)
    if problem:
        raise CheckpointError(problem)
    sam.load_state_dict(obj["state_dict"])
    return sam.to(device).eval()
