"""The quick validation score used during training (through `stablesam eval`'s own machinery)."""

import copy
from pathlib import Path
from typing import Dict

import numpy as np
from segment_anything.modeling import Sam

from stablesam.data.datasets import FolderDataset
from stablesam.evaluation.metrics import boundary_iou, mask_iou
from stablesam.prompts.generation import generate, object_rng

from .split import DATASETS, read_split_list


class ValSet:
    """The first n validation objects of a fixed shuffle (all datasets mixed), loaded once."""

    def __init__(self, data_root: Path, split_file: Path, n: int):
        names = read_split_list(split_file)
        order = object_rng(0, "val-order").permutation(len(names))
        picked = [names[i] for i in order[:n]]
        self.samples = []
        for dataset in DATASETS:
            stems = [x.split("/", 1)[1] for x in picked if x.startswith(dataset + "/")]
            if stems:
                ds = FolderDataset(data_root / dataset, stems=stems)
                self.samples.extend(s for s in ds if s is not None)


def evaluate_val(sam: Sam, valset: ValSet, clicks: int = 3) -> Dict[str, float]:
    """mIoU of the model (a copy, fp32, eval mode) on the validation objects: gt-box with
    single-mask output (and its mBIoU), and one click with the best of the 3 masks by predicted
    IoU (`clicks` random clicks per object)."""
    from stablesam.modeling import StableSam
    from stablesam.models.segmenters import SamSegmenter

    model = StableSam(copy.deepcopy(sam).float().eval())
    model.plugins_enabled = False
    seg = SamSegmenter("tiny-sam", model)
    box_ious, box_bious, click_ious = [], [], []
    for s in valset.samples:
        seg.set_image(s.image)
        rng = object_rng(0, "val", s.dataset, s.name)
        box_mask = seg.predict(generate("gt-box", s.mask, 1, rng))[0]
        box_ious.append(mask_iou(box_mask, s.mask, s.ignore))
        box_bious.append(boundary_iou(box_mask, s.mask, ignore=s.ignore))
        masks = seg.predict(generate("points@1", s.mask, clicks, rng), multimask=True)
        click_ious.append(float(np.mean([mask_iou(m, s.mask, s.ignore) for m in masks])))
    return {"objects": len(valset.samples), "miou_gt_box": float(np.mean(box_ious)),
            "mbiou_gt_box": float(np.mean(box_bious)), "miou_1click_best": float(np.mean(click_ious))}
