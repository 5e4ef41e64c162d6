"""napari's `File > Open Sample` for the plugin: the package's two example images (CC0).

Imports no torch: opening a sample needs only Pillow."""

from pathlib import Path
from typing import Any, Dict, List, Tuple

EXAMPLES_DIR = Path(__file__).parents[1] / "examples"  # stablesam/examples (the embedded model's)

LayerData = Tuple[Any, Dict[str, Any], str]


def example(name: str) -> List[LayerData]:
    """The example image `name` (coffee, cat) as one napari image layer (H, W, 3) uint8 RGB."""
    from ..data.images import load_image

    return [(load_image(EXAMPLES_DIR / f"{name}.jpg"), {"name": name, "rgb": True}, "image")]


def coffee() -> List[LayerData]:
    """A cup of coffee on a saucer (400 x 600 px; try the box 170,15,410,305)."""
    return example("coffee")


def cat() -> List[LayerData]:
    """Chelsea the cat (300 x 451 px)."""
    return example("cat")
