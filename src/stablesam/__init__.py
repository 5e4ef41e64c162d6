"""Stable-SAM: Segment Anything made stable under low-quality prompts."""

__version__ = "0.1.0"

from .checkpoints import CheckpointError, attach_plugin, load_model, read_plugin, save_plugin
from .modeling import PluginConfig, StableSam
from .predictor import StableSamPredictor

__all__ = [
    "CheckpointError",
    "PluginConfig",
    "StableSam",
    "StableSamPredictor",
    "attach_plugin",
    "load_model",
    "read_plugin",
    "save_plugin",
]
