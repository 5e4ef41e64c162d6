"""The model_version Label Studio records with each prediction: the SPEC and the plugin's hash."""

from pathlib import Path
from typing import Optional

from ..models.embedded import sha256
from ..models.spec import ModelSpec


def plugin_file(spec: ModelSpec) -> Optional[Path]:
    """The plugin file a SPEC loads (the embedded one for tiny-stable-sam and the other embedded
    plugins), or None."""
    from ..models.embedded import plugin_path

    return spec.plugin if spec.plugin is not None else plugin_path(spec.base)


def model_version(spec: ModelSpec) -> str:
    """'SPEC@plugin-sha256[:12]' ('SPEC@no-plugin' for plain SAM): a new plugin file is a new version."""
    plugin = plugin_file(spec)
    return f"{spec.text}@{sha256(plugin)[:12] if plugin is not None else 'no-plugin'}"
