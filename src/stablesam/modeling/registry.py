"""The model registry: each SAM family registers its backend here (`@register_family`, in the
style of timm's `register_model`), declaring its SPEC heads, checkpoint-key signature, pip
extra, frame geometry and predictor classes. Everything that needs to know about a family
asks the registry; nothing else in the package names one.

The registry sits below the plugins (`StableSam` asks it for a model's backend); the families
sit above, one subpackage each in `stablesam.backends`. Importing `stablesam.backends` imports
every family's subpackage (each imports its own package only when used), so the registry is
full whenever any part of the package runs.
"""

import importlib.util
import sys
from typing import Any, Dict, List, Optional, Type

from .family import Backend, MissingExtra

_FAMILIES: Dict[str, Backend] = {}  # family -> backend, in registration order


def register_family(cls: Type[Backend]) -> Type[Backend]:
    """Class decorator: register one instance of a Backend subclass under its `family`."""
    backend = cls()
    if not backend.family or backend.family in _FAMILIES:
        raise ValueError(f"a SAM family needs a new name, got {backend.family!r}")
    _FAMILIES[backend.family] = backend
    return cls


def families() -> List[Backend]:
    """Every registered backend, SAM 1 first."""
    return list(_FAMILIES.values())


def get_backend(family: str) -> Backend:
    if family not in _FAMILIES:
        raise ValueError(f"unknown SAM family {family!r}; known: {', '.join(_FAMILIES)}")
    return _FAMILIES[family]


def require(family: str) -> None:
    """Raise MissingExtra (one line, naming the extra) if the family's package is missing."""
    backend = get_backend(family)
    for name in backend.requires:
        if importlib.util.find_spec(name) is None:
            raise MissingExtra(f"{backend.title} needs the '{name}' package: pip install \"stable-segment-anything[{backend.extra}]\"")


def installed(family: str) -> bool:
    try:
        require(family)
        return True
    except MissingExtra:
        return False


def backend_for(model: Any) -> Backend:
    """The backend of a model object (only families whose package is already imported are
    asked: a model of that family implies its package is loaded)."""
    for backend in _FAMILIES.values():
        if backend.requires[0] in sys.modules and backend.owns(model):
            return backend
    raise TypeError(
        f"StableSam wraps a SAM model (segment_anything Sam, segment_anything_hq Sam, sam2 SAM2Base, "
        f"sam3 Sam3Image or its tracker, transformers SamModel/Sam2Model/Sam3TrackerModel), got {type(model).__name__}"
    )


def family_title(family: str) -> str:
    return _FAMILIES[family].title if family in _FAMILIES else repr(family)


def backend_for_head(head: str) -> Optional[Backend]:
    """The backend whose SPEC heads include `head` (vit_b, hq_vit_b, sam2.1_hiera_t, hf, ...)."""
    for backend in _FAMILIES.values():
        if head in backend.variants:
            return backend
    return None


def checkpoint_family(state: Dict[str, Any]) -> Optional[str]:
    """Which SAM family a state dict's key names say it is (None: none of them). The most
    specific signatures are asked first; SAM 1's (any mask_decoder.* key) last."""
    for backend in sorted(_FAMILIES.values(), key=lambda b: b.generic_signature):
        if backend.checkpoint_signature(state):
            return backend.family
    return None


def accepted_lines() -> List[str]:
    """Each family's lines of the accepted-SPEC text, in registration order."""
    return [line for backend in _FAMILIES.values() for line in backend.spec_help]
