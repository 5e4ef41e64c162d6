"""The committed train/validation split of ../shared/data (splits/train.txt, splits/val.txt).

Every rule is deterministic and blocks correlated images together, so that no validation image
has a near-duplicate in training. Rules for the first three sets are unchanged since v1 (old and
new numbers compare); ECSSD and Oxford-IIIT Pet were added with tiny SAM v2.
"""

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from stablesam.data.datasets import FolderDataset, load_split
from stablesam.prompts.generation import object_rng
from stablesam.fileio import write_text

DATASETS = ("davis345", "coco_mval", "weizmann_horse", "ecssd", "oxford_pets")
# DAVIS frames come in runs of ~5-8 frames per video. Validation = three runs of whole videos,
# inclusive frame numbers, each edge at a video cut (checked by eye on a contact sheet):
# 47-76 dance/dog-agility/drift/elephant/flamingo, 193-212 tennis/train/black swan,
# 299-320 kite-surf/dog/motocross-jump/paragliding. 72 of 345 frames (20.9 %).
DAVIS_VAL_BLOCKS = ((47, 76), (193, 212), (299, 320))
COCO_VAL_FRACTION = 0.2
BLOCK, VAL_BLOCK_MOD = 10, 2  # blocks of 10; every fifth block (the third of each five) is val


def coco_image_id(stem: str) -> str:
    """'baseball bat00_000000123456' -> '000000123456'."""
    return stem.rsplit("_", 1)[-1]


def in_val_block(index: int) -> bool:
    """0-based index -> whether its block of BLOCK is a validation block."""
    return (index // BLOCK) % 5 == VAL_BLOCK_MOD


def dataset_stems(data_root: Path, dataset: str) -> List[str]:
    """Stems with a usable image/mask pair (FolderDataset's header checks)."""
    return sorted(ref.name for ref in FolderDataset(data_root / dataset).objects)


def _pets_val(names: Sequence[str]) -> Dict[str, bool]:
    """Per breed, images in order of their number, blocks of 10 by rank: every breed gets ~20 %."""
    by_breed: Dict[str, List[Tuple[int, str]]] = {}
    for s in names:
        breed, number = s.rsplit("_", 1)
        by_breed.setdefault(breed, []).append((int(number), s))
    return {s: in_val_block(rank) for items in by_breed.values() for rank, (_, s) in enumerate(sorted(items))}


def make_split(stems: Dict[str, Sequence[str]]) -> Tuple[List[str], List[str]]:
    """Deterministic train/val split of {dataset: stems} -> (train, val) lists of 'dataset/stem'.

    davis345: the whole-video frame blocks DAVIS_VAL_BLOCKS; coco_mval: 20 % of the distinct
    COCO image ids (a seeded permutation; an image id is never in both); weizmann_horse: horse
    numbers in blocks of 10, every fifth block (21-30, 71-80, ...) in val; ecssd: image numbers
    in the same blocks (0021-0030, 0071-0080, ...); oxford_pets: per breed, the images sorted by
    number in blocks of 10, every fifth block in val.
    """
    train, val = [], []
    for dataset, names in sorted(stems.items()):
        names = sorted(names)
        if dataset == "davis345":
            is_val = {s: any(a <= int(s) <= b for a, b in DAVIS_VAL_BLOCKS) for s in names}
        elif dataset == "coco_mval":
            ids = sorted({coco_image_id(s) for s in names})
            order = object_rng(0, "split", dataset).permutation(len(ids))
            val_ids = {ids[i] for i in order[: round(COCO_VAL_FRACTION * len(ids))]}
            is_val = {s: coco_image_id(s) in val_ids for s in names}
        elif dataset == "weizmann_horse":
            is_val = {s: in_val_block(int(s[len("horse"):]) - 1) for s in names}
        elif dataset == "ecssd":
            is_val = {s: in_val_block(int(s) - 1) for s in names}
        elif dataset == "oxford_pets":
            is_val = _pets_val(names)
        else:
            raise ValueError(f"no split rule for dataset {dataset!r}")
        for s in names:
            (val if is_val[s] else train).append(f"{dataset}/{s}")
    check_split(train, val)
    return train, val


def check_split(train: Sequence[str], val: Sequence[str]) -> None:
    """Raise ValueError if a file, or a COCO image id, is in both lists."""
    both = sorted(set(train) & set(val))
    if both:
        raise ValueError(f"{len(both)} entries in both train and val, e.g. {both[:3]}")
    ids = [{coco_image_id(x.split("/", 1)[1]) for x in part if x.startswith("coco_mval/")} for part in (train, val)]
    shared = sorted(ids[0] & ids[1])
    if shared:
        raise ValueError(f"{len(shared)} COCO image ids in both train and val, e.g. {shared[:3]}")


def write_split(data_root: Path, split_dir: Path) -> Tuple[List[str], List[str]]:
    train, val = make_split({d: dataset_stems(data_root, d) for d in DATASETS})
    header = ("# {} split of ../shared/data for the tiny SAM, written by scripts/train_tiny_sam.py "
              "--write-split (deterministic: see scripts/tiny_sam/split.py). One 'dataset/stem' per line.\n")
    for name, items in (("train", train), ("val", val)):
        write_text(split_dir / f"{name}.txt", header.format(name) + "".join(x + "\n" for x in items))
    return train, val


def read_split_list(path: Path) -> List[str]:
    return sorted(f"{d}/{s}" for d, stems in load_split(path).items() for s in stems)
