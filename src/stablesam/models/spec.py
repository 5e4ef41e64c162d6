"""Model SPECs (one syntax for eval, train, segment and demo) and the one dispatcher that builds
any of them. The SPEC heads of the SAM families and their help lines come from the registry
(`stablesam.modeling.registry`); this module names no family."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple


from ..modeling.family import MissingExtra
from ..backends.official import CheckpointError
from ..modeling.registry import accepted_lines, backend_for_head, require
from ..modeling import StableSam
from .cache import EmbeddingCache
from .embedded import EMBEDDED, NAMED_PLUGINS
from .files import load_decoder
from .loading import load_base, wrap_sam
from .segmenters import GrabCutSegmenter, SamSegmenter, Segmenter

DEFAULT_SPEC = "tiny-stable-sam"
OWN_SPEC_HELP = "  sam:PATH                             SAM from a stablesam SAM file (architecture + weights)"
SPEC_HELP_TAIL = (
    "  tiny-sam, tiny-stable-sam            the embedded base model / the embedded Stable-SAM",
    *(f"  {head:<37}{use}" for head, (_, use) in list(NAMED_PLUGINS.items())[1:]),
    "  SPEC+plugin=PATH                     Stable-SAM: that SAM with the plugin file at PATH",
    "  SPEC+decoder=PATH                    that SAM with decoder-tuned weights (DT baseline)",
)
_FAMILY_LINES = accepted_lines()  # SAM 1's line first, then the other families' in registration order
SAM_ACCEPTED = "\n".join(["accepted model SPECs:", _FAMILY_LINES[0], OWN_SPEC_HELP, *_FAMILY_LINES[1:], *SPEC_HELP_TAIL])
ACCEPTED = SAM_ACCEPTED + """
  grabcut, grabcut@N                   OpenCV GrabCut initialised from the box (boxes only); @N: on the
                                       image resized to N px on its long side (faster; masks upsampled)"""


class SpecError(ValueError):
    """A model SPEC that cannot be built."""


@dataclass(frozen=True)
class ModelSpec:
    text: str
    base: str  # a registered family's SPEC head (vit_b, hq_vit_b, ...) | sam | tiny-sam | tiny-stable-sam | grabcut
    checkpoint: Optional[Path] = None
    plugin: Optional[Path] = None
    decoder: Optional[Path] = None
    max_side: Optional[int] = None  # grabcut@N

    @property
    def name(self) -> str:
        return self.text

    @property
    def base_name(self) -> str:
        """What a plugin trained on this SPEC records as its base (e.g. 'vit_b:sam_vit_b.pth')."""
        if self.checkpoint is not None:
            return f"{self.base}:{self.checkpoint.name}"
        return "tiny-sam" if self.base in EMBEDDED else self.base


def parse_model_spec(text: str) -> ModelSpec:
    """Parse and check a SPEC (files must exist) before any work starts."""
    parts = re.split(r"\+(plugin|decoder)=", text.strip())
    head, extras = parts[0], dict(zip(parts[1::2], parts[2::2]))
    if len(parts) > 1 and len(extras) != (len(parts) - 1) // 2:
        raise SpecError(f"model SPEC {text!r} names +plugin or +decoder twice\n{ACCEPTED}")
    base, sep, path = head.partition(":")
    checkpoint = None
    family = backend_for_head(base)
    if (family is not None or base == "sam") and sep:
        checkpoint = Path(path)
        if family is not None and family.extra is not None:
            try:
                require(family.family)
            except MissingExtra as e:
                raise SpecError(f"model SPEC {text!r}: {e}") from None
    elif base.partition("@")[0] == "grabcut" and not sep:
        if extras:
            raise SpecError(f"grabcut takes no +plugin/+decoder (in {text!r})\n{ACCEPTED}")
        side = base.partition("@")[2]
        if base != "grabcut" and not (side.isdigit() and int(side) >= 16):
            raise SpecError(f"model SPEC {text!r}: grabcut@N needs an integer N >= 16 (long side in px)\n{ACCEPTED}")
        return ModelSpec(text.strip(), "grabcut", max_side=int(side) if side else None)
    elif base not in EMBEDDED or sep:
        raise SpecError(f"unknown model SPEC {text!r}\n{ACCEPTED}")
    plugin = Path(extras["plugin"]) if "plugin" in extras else None
    decoder = Path(extras["decoder"]) if "decoder" in extras else None
    if base in EMBEDDED and base != "tiny-sam" and plugin is not None:
        raise SpecError(f"{text!r}: {base} already has its plugin; use tiny-sam+plugin=PATH")
    folder = family is not None and family.checkpoint_is_folder
    if folder and not checkpoint.is_dir():
        raise SpecError(f"model SPEC {text!r}: {base}:DIR needs a folder (what save_pretrained writes), "
                        f"not found: {checkpoint}\n{ACCEPTED}")
    for what, p in (("checkpoint", None if folder else checkpoint), ("plugin file", plugin),
                    ("decoder file", decoder)):
        if p is not None and not p.is_file():
            raise SpecError(f"model SPEC {text!r}: {what} not found: {p}\n{ACCEPTED}")
    if base in EMBEDDED:
        from .embedded import embedded_available  # looked up at call time (tests replace it)

        if not embedded_available():
            raise SpecError(f"model SPEC {text!r}: the embedded model is not shipped in this installation\n{ACCEPTED}")
    return ModelSpec(text.strip(), base, checkpoint, plugin, decoder)


def build_model(spec: ModelSpec, device: Optional[str] = None, force: bool = False) -> StableSam:
    """The StableSam a (non-grabcut) SPEC names; plugins on only with a plugin."""
    from ..limits import RangeError, checked_device

    try:
        device = checked_device(device)
    except RangeError as e:
        raise SpecError(str(e)) from None
    try:
        sam, default_plugin = load_base(spec.base, spec.checkpoint, device)
        plugin = spec.plugin if spec.plugin is not None else default_plugin
        if spec.decoder is not None:
            load_decoder(sam, spec.decoder, force=force)
        return wrap_sam(sam, plugin, force)
    except CheckpointError as e:
        raise SpecError(f"model SPEC {spec.text!r}: {e}") from None


def build_sam_for(command: str, text: str, device: Optional[str] = None, force: bool = False,
                  families: Optional[Tuple[str, ...]] = None) -> Tuple[ModelSpec, StableSam]:
    """(spec, model) for a command that needs a SAM: a grabcut SPEC, or a family outside
    `families` (e.g. ("sam1",) for what only segment_anything provides), is a SpecError."""
    spec = parse_model_spec(text)
    if spec.base == "grabcut":
        raise SpecError(f"grabcut is a benchmark peer (stablesam eval); {command} takes a SAM model SPEC")
    model = build_model(spec, device, force)
    if families is not None and model.family not in families:
        raise SpecError(f"{command} supports {', '.join(families)} models only; {spec.text!r} is a "
                        f"{model.family} model")
    return spec, model


def build_segmenter(
    spec: ModelSpec, cache: Optional[EmbeddingCache] = None, device: Optional[str] = None,
    force: bool = False, seed: int = 0,
) -> Segmenter:
    if spec.base == "grabcut":
        return GrabCutSegmenter(seed=seed, max_side=spec.max_side, name=spec.name)
    return SamSegmenter(spec.name, build_model(spec, device, force), cache)
