"""A project's labelling config, read with label-studio-sdk's own parser (`LabelInterface`):
which tags take the mask (BrushLabels, PolygonLabels), which image they label and where the
task keeps that image's URL."""

import functools
import importlib.util
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..modeling.family import MissingExtra
from ..data.images import InputError

OUTPUT_TAGS = {"BrushLabels": "brushlabels", "PolygonLabels": "polygonlabels"}
SDK_HINT = 'pip install "stable-segment-anything[label-studio]"'


def require_sdk() -> None:
    """Raise MissingExtra (one line) when label-studio-sdk is not installed."""
    if importlib.util.find_spec("label_studio_sdk") is None:
        raise MissingExtra(f"stablesam label-studio needs the 'label-studio-sdk' package: {SDK_HINT}")


def warm_up() -> None:
    """Import the SDK's parser and RLE encoder now (seconds): Label Studio waits only 3 s for /setup."""
    require_sdk()
    import label_studio_sdk.converter.brush  # noqa: F401
    import label_studio_sdk.label_interface  # noqa: F401


@dataclass(frozen=True)
class OutputTag:
    """A control tag that receives masks: `from_name`, the Image tag it labels, its labels."""

    name: str
    to_name: str
    type: str  # result type: "brushlabels" | "polygonlabels"
    labels: Tuple[str, ...]


@dataclass(frozen=True)
class LabelingConfig:
    """The parts of a labelling config this backend uses."""

    outputs: Tuple[OutputTag, ...]
    images: Dict[str, str]  # Image tag name -> task data key ($image -> "image")

    def image_key(self, to_name: Optional[str]) -> Tuple[str, str]:
        """(Image tag name, task data key) for `to_name`, or for the first image that has an output tag."""
        names = [to_name] if to_name is not None else [t.to_name for t in self.outputs]
        for name in names:
            if name in self.images:
                return name, self.images[name]
        raise InputError(f"the labelling config has no Image tag named {to_name!r}" if to_name is not None
                         else "the labelling config has no Image tag labelled by BrushLabels or PolygonLabels")

    def targets(self, to_name: str, label: Optional[str]) -> List[OutputTag]:
        """One output tag per result type for an image: the tag that lists `label`, else the first."""
        chosen: List[OutputTag] = []
        for kind in OUTPUT_TAGS.values():
            tags = [t for t in self.outputs if t.type == kind and t.to_name == to_name]
            if tags:
                chosen.append(next((t for t in tags if label in t.labels), tags[0]))
        if not chosen:
            raise InputError(f"the labelling config has no BrushLabels or PolygonLabels tag with toName={to_name!r}")
        return chosen


@functools.lru_cache(maxsize=32)
def parse_config(xml: str) -> LabelingConfig:
    """A labelling config (XML text) -> LabelingConfig, or InputError naming what is missing."""
    require_sdk()
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(xml, str) or not xml.strip():
        raise InputError("no labelling config (label_config / schema) in the request")
    try:
        interface = LabelInterface(xml)
    except Exception as e:  # the SDK raises several types for bad XML
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise InputError(f"the labelling config cannot be read ({reason})") from None
    images = {o.name: str(o.value).lstrip("$") for o in interface.objects if o.tag == "Image"}
    outputs = tuple(
        OutputTag(c.name, name, OUTPUT_TAGS[c.tag], tuple(getattr(c, "labels", None) or ()))
        for c in interface.controls if c.tag in OUTPUT_TAGS
        for name in c.to_name if name in images
    )
    if not outputs:
        raise InputError("the labelling config has no BrushLabels or PolygonLabels tag on an Image: "
                         "Stable-SAM's masks need one (see the README's labelling config)")
    return LabelingConfig(outputs, images)
