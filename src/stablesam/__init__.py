"""Stable-SAM: Segment Anything made stable under low-quality prompts."""

__version__ = "0.1.0"

from .automatic import StableSamAutomaticMaskGenerator
from .checkpoints import CheckpointError, attach_plugin, load_model, read_plugin, save_plugin
from .images import InputError, load_image
from .modeling import PluginConfig, StableSam
from .predictor import StableSamPredictor

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
