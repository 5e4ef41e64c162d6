"""`stablesam label-studio`: Stable-SAM as a Label Studio ML backend (interactive masks from a
box or clicks, and masks for the boxes a task already holds)."""

from .app import create_app
from .config import parse_config, require_sdk
from .engine import LabelStudioEngine
from .fetch import ImageFetcher
from .version import model_version

__all__ = ["ImageFetcher", "LabelStudioEngine", "create_app", "model_version", "parse_config", "require_sdk"]
