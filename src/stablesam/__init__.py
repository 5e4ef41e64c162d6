"""Stable-SAM: Segment Anything made stable under low-quality prompts.

The public names below are imported on first use (PEP 562), so that `import stablesam` and the
`stablesam` command start without loading torch or segment_anything until a model is needed.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": ".backends.official",
    "InputError": ".data.images",
    "PluginConfig": ".modeling",
    "StableSam": ".modeling",
    "StableSamAutomaticMaskGenerator": ".backends.automatic",
    "StableSamPredictor": ".backends.predictor",
    "attach_plugin": ".models.files",
    "load_image": ".data.images",
    "load_model": ".models.loading",
    "read_plugin": ".models.files",
    "save_plugin": ".models.files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stablesam' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
