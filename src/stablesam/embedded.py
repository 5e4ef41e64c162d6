"""The embedded default model shipped inside the package (weights under stablesam/weights)."""

from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from segment_anything.modeling import Sam

WEIGHTS_DIR = Path(__file__).parent / "weights"
BASE_FILE = WEIGHTS_DIR / "tiny_sam.pt"
PLUGIN_FILE = WEIGHTS_DIR / "tiny_stable_sam_plugin.pt"


def embedded_available() -> bool:
    return BASE_FILE.is_file() and PLUGIN_FILE.is_file()


def load_embedded_sam(device: Union[str, torch.device] = "cpu") -> Tuple[Sam, Optional[Path]]:
    """The embedded tiny SAM and the path of its plugin file."""
    if not BASE_FILE.is_file():
        raise FileNotFoundError(
            f"no embedded model in this installation ({BASE_FILE} is missing); "
            "name an official checkpoint instead, e.g. vit_b:/path/to/sam_vit_b_01ec64.pth"
        )
    raise NotImplementedError("embedded model loading lands with the embedded-model issue")
