"""The embedded default model shipped inside the package: a tiny SAM trained by this project on
real images (see scripts/train_tiny_sam.py) and its Stable-SAM plugin."""

import hashlib
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from segment_anything.modeling import Sam

from ..modeling.family import AUTOMATIC_DEFAULTS_ATTR

WEIGHTS_DIR = Path(__file__).parents[1] / "weights"
BASE_FILE = WEIGHTS_DIR / "tiny_sam.pt"
PLUGIN_FILE = WEIGHTS_DIR / "tiny_stable_sam_plugin.pt"
CHECKSUM_FILE = WEIGHTS_DIR / "SHA256SUMS"
EXAMPLES_DIR = Path(__file__).parents[1] / "examples"
EXAMPLE_IMAGE = EXAMPLES_DIR / "cat.jpg"
# The embedded plugins of the embedded base, by SPEC head: (file in WEIGHTS_DIR, when to use it).
# The first is the default SPEC's; each has its figures in docs/results/lodo.md.
NAMED_PLUGINS: Dict[str, Tuple[str, str]] = {
    "tiny-stable-sam": ("tiny_stable_sam_plugin.pt",
                        "the default: gentle, safe on every kind of image (cluttered scenes included)"),
    "tiny-stable-sam-strong": ("tiny_stable_sam_strong_plugin.pt",
                               "loose boxes around one main object: a stronger plugin that falls back to SAM "
                               "where SAM's IoU head prefers SAM's mask, and on clicks alone"),
    "tiny-stable-sam-single": ("tiny_stable_sam_single_plugin.pt",
                               "photos of one main object (a product, a pet, a salient object): a loose box is "
                               "decoded again with the box of its own mask; not for cluttered scenes, where it "
                               "costs several points"),
}
EMBEDDED = ("tiny-sam", *NAMED_PLUGINS)  # SPEC heads: the base model, then the base with each plugin
# Automatic-mask ("segment everything") thresholds calibrated for the embedded tiny SAM, which
# predicts lower IoUs and softer logits than Meta's SAM (whose generator defaults, 0.88 / 0.95,
# were chosen for ViT-H and keep no mask of this model): on 10 training images (2 per set,
# 10 x 10 grid), stability >= 0.3 found 90 % of the objects at IoU >= 0.5 against 70 % with 0.5,
# and predicted IoU > 0.3 kept that recall with the fewest masks (6.4 per image; 0.1: 15.5);
# benchmarks/automatic_masks.py calibrate, docs/results/automatic_masks.md. `load_embedded_sam`
# records them on the model (`AUTOMATIC_DEFAULTS_ATTR`), so that the Python generator and
# `segment --everything` both default to them.
AUTOMATIC_DEFAULTS = {"pred_iou_thresh": 0.3, "stability_score_thresh": 0.3}


def embedded_available() -> bool:
    return BASE_FILE.is_file() and PLUGIN_FILE.is_file()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_checksums() -> Dict[str, str]:
    """{file name: sha256} from weights/SHA256SUMS (sha256sum's format)."""
    if not CHECKSUM_FILE.is_file():
        return {}
    pairs = (line.split() for line in CHECKSUM_FILE.read_text().splitlines() if line.strip())
    return {name.lstrip("*"): digest for digest, name in pairs}


def verify(path: Path) -> None:
    """Refuse an embedded file whose content differs from its recorded checksum."""
    from ..backends.official import CheckpointError

    expected = recorded_checksums().get(path.name)
    if expected is None:
        raise CheckpointError(f"no checksum recorded for {path.name} in {CHECKSUM_FILE}")
    actual = sha256(path)
    if actual != expected:
        raise CheckpointError(f"{path}: checksum {actual[:16]}… does not match the recorded {expected[:16]}… "
                              "(damaged installation? reinstall stablesam)")


def plugin_path(head: str) -> Optional[Path]:
    """Where the plugin of an embedded SPEC head is shipped (None for tiny-sam and other heads)."""
    return WEIGHTS_DIR / NAMED_PLUGINS[head][0] if head in NAMED_PLUGINS else None


def named_plugin_file(head: str) -> Optional[Path]:
    """The checksum-verified plugin file of an embedded SPEC head (None for tiny-sam)."""
    path = plugin_path(head)
    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"the embedded plugin of {head} ({path.name}) is missing in {WEIGHTS_DIR}")
    verify(path)
    return path


def load_embedded_sam(device: Union[str, torch.device] = "cpu") -> Tuple[Sam, Optional[Path]]:
    """The embedded tiny SAM (offline, weights_only, checksum-verified) and its plugin file."""
    from .files import load_sam_file

    if not embedded_available():
        raise FileNotFoundError(
            f"no embedded model in this installation ({BASE_FILE.name} / {PLUGIN_FILE.name} missing in "
            f"{WEIGHTS_DIR}); name an official checkpoint instead, e.g. vit_b:/path/to/sam_vit_b_01ec64.pth"
        )
    verify(BASE_FILE)
    verify(PLUGIN_FILE)
    sam = load_sam_file(BASE_FILE, device)
    setattr(sam, AUTOMATIC_DEFAULTS_ATTR, dict(AUTOMATIC_DEFAULTS))
    return sam, PLUGIN_FILE
