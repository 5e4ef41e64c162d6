"""HQSeg-44K as HQ-SAM's authors publish it (huggingface.co/sam-hq-team/sam-hq-training, folder
`data/`): the training mix and the four test sets of Stable-SAM's tables, checked before any
work starts. The same lists, for `stablesam train` / `eval`, are docs/datasets/hqseg44k_train.txt
and docs/datasets/stable_sam_test.txt (a test keeps them equal)."""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..data.datasets import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class HqsegSet:
    """One set: its name, its image folder and its mask folder under ROOT (the same folder:
    images and .png masks side by side)."""

    name: str
    images: str
    masks: str

    def spec(self, root: Path) -> str:
        """The `--data` SPEC of this set under `root`."""
        images, masks = root / self.images, root / self.masks
        return f"{self.name}={images}" if self.images == self.masks else f"{self.name}={images}:{masks}"


# HQ-SAM's training list: six sources (DIS, ThinObject-5K, FSS-1000, DUTS, ECSSD, MSRA-10K),
# DUTS in its two published folders; 44,320 images in all.
TRAIN_SETS: Tuple[HqsegSet, ...] = (
    HqsegSet("DIS5K-TR", "DIS5K/DIS-TR/im", "DIS5K/DIS-TR/gt"),
    HqsegSet("ThinObject5K-TR", "thin_object_detection/ThinObject5K/images_train",
             "thin_object_detection/ThinObject5K/masks_train"),
    HqsegSet("FSS", "cascade_psp/fss_all", "cascade_psp/fss_all"),
    HqsegSet("DUTS-TR", "cascade_psp/DUTS-TR", "cascade_psp/DUTS-TR"),
    HqsegSet("DUTS-TE", "cascade_psp/DUTS-TE", "cascade_psp/DUTS-TE"),
    HqsegSet("ECSSD", "cascade_psp/ecssd", "cascade_psp/ecssd"),
    HqsegSet("MSRA10K", "cascade_psp/MSRA_10K", "cascade_psp/MSRA_10K"),
)
# The four test sets of Stable-SAM's (and HQ-SAM's) tables.
TEST_SETS: Tuple[HqsegSet, ...] = (
    HqsegSet("DIS5K-VD", "DIS5K/DIS-VD/im", "DIS5K/DIS-VD/gt"),
    HqsegSet("ThinObject5K-TE", "thin_object_detection/ThinObject5K/images_test",
             "thin_object_detection/ThinObject5K/masks_test"),
    HqsegSet("COIFT", "thin_object_detection/COIFT/images", "thin_object_detection/COIFT/masks"),
    HqsegSet("HR-SOD", "thin_object_detection/HRSOD/images", "thin_object_detection/HRSOD/masks_max255"),
)


class LayoutError(ValueError):
    """HQSeg-44K under ROOT lacks sets (the message names each, with the folder it looked for)."""


def image_files(folder: Path, side_by_side: bool) -> List[Path]:
    """The image files of a set's image folder (side by side: not its .png masks)."""
    files = [p for p in folder.iterdir()
             if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(p for p in files if not (side_by_side and p.suffix.lower() == ".png"))


def set_problem(root: Path, s: HqsegSet) -> Optional[str]:
    """What is wrong with set `s` under `root` (None: its folders exist and hold images)."""
    for rel, what in ((s.images, "images"), (s.masks, "masks")):
        if not (root / rel).is_dir():
            return f"{s.name} ({what} folder {rel} not found)"
    if not image_files(root / s.images, s.images == s.masks):
        return f"{s.name} (no image in {s.images})"
    return None


def check_layout(root: Path, sets: Sequence[HqsegSet] = TRAIN_SETS + TEST_SETS) -> None:
    """LayoutError naming every set of `sets` missing or empty under `root` (one line)."""
    if not root.is_dir():
        raise LayoutError(f"--hqseg {root}: not a folder (expected HQ-SAM's data/ folder of HQSeg-44K)")
    problems = [p for p in (set_problem(root, s) for s in sets) if p]
    if problems:
        raise LayoutError(f"--hqseg {root}: HQSeg-44K is incomplete: missing {'; '.join(problems)} "
                          "(download: huggingface.co/sam-hq-team/sam-hq-training, folder data/)")


def count_images(root: Path, sets: Sequence[HqsegSet]) -> int:
    """How many images the sets hold (files in their image folders)."""
    return sum(len(image_files(root / s.images, s.images == s.masks)) for s in sets)
