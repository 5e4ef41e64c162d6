"""One backend per SAM family; `backend_for(model)` finds a model's, `get_backend(name)` names one.

Each family lives in its own module and imports its package only when used, so the base
install needs only `segment_anything`; a missing package raises `MissingExtra` naming the
pip extra to install.
"""

import importlib
import importlib.util
import sys
from typing import Any, Dict

from .base import Backend, Embedding, MissingExtra

# family -> (module, class, package, extra, title)
FAMILIES = {
    "sam1": ("sam1", "Sam1Backend", "segment_anything", None, "SAM 1"),
    "hq": ("hq", "HqBackend", "segment_anything_hq", "hq", "HQ-SAM"),
    "sam2": ("sam2", "Sam2Backend", "sam2", "sam2", "SAM 2.1"),
    "hf": ("hf", "HfBackend", "transformers", "hf", "Hugging Face transformers SAM"),
}
# import names each family needs (segment_anything_hq imports timm without declaring it)
REQUIRES = {"hq": ("segment_anything_hq", "timm")}
_LOADED: Dict[str, Backend] = {}


def require(family: str) -> None:
    """Raise MissingExtra (one line, naming the extra) if the family's package is missing."""
    _, _, package, extra, title = FAMILIES[family]
    for name in REQUIRES.get(family, (package,)):
        if importlib.util.find_spec(name) is None:
            raise MissingExtra(f"{title} needs the '{name}' package: pip install \"stablesam[{extra}]\"")


def get_backend(family: str) -> Backend:
    if family not in FAMILIES:
        raise ValueError(f"unknown SAM family {family!r}; known: {', '.join(FAMILIES)}")
    backend = _LOADED.get(family)
    if backend is None:
        module, cls = FAMILIES[family][:2]
        backend = _LOADED[family] = getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
    return backend


def backend_for(model: Any) -> Backend:
    """The backend of a model object (only families whose package is already imported are
    asked: a model of that family implies its package is loaded)."""
    for family, (_, _, package, _, _) in FAMILIES.items():
        if package in sys.modules and get_backend(family).owns(model):
            return get_backend(family)
    raise TypeError(
        f"StableSam wraps a SAM model (segment_anything Sam, segment_anything_hq Sam, sam2 SAM2Base, "
        f"transformers SamModel/Sam2Model), got {type(model).__name__}"
    )


def family_title(family: str) -> str:
    return FAMILIES[family][4] if family in FAMILIES else repr(family)


__all__ = ["Backend", "Embedding", "FAMILIES", "MissingExtra", "backend_for", "family_title", "get_backend", "require"]
