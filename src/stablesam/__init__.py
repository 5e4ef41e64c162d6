"""Stable-SAM: Segment Anything made stable under low-quality prompts."""

__version__ = "0.1.0"

from .backends.automatic import StableSamAutomaticMaskGenerator
from .backends.official import CheckpointError
from .models.files import attach_plugin, read_plugin, save_plugin
from .models.loading import load_model
from .data.images import InputError, load_image
from .modeling import PluginConfig, StableSam
from .backends.predictor import StableSamPredictor

__all__ = [
    "CheckpointError",
    "InputError",
    "PluginConfig",
    "StableSam",
    "StableSamAutomaticMaskGenerator",
    "StableSamPredictor",
    "attach_plugin",
    "load_image",
    "load_model",
    "read_plugin",
    "save_plugin",
]
