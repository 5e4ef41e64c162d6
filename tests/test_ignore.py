"""Ignore regions (a trimap's border band, DAVIS's void) count neither as foreground nor as
background: in the loaders, the losses and the metrics."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED_DATA
from stablesam.data.datasets import FolderDataset, is_trimap
from stablesam.training.losses import bce_dice_loss
from stablesam.evaluation.metrics import boundary_iou, mask_iou
from stablesam.modeling.geometry import low_res_target


def trimap() -> np.ndarray:
    """A 40 x 40 square object (255) inside a 4-px band (128) on background (0)."""
    m = np.zeros((64, 64), np.uint8)
    m[8:56, 8:56] = 128
    m[12:52, 12:52] = 255
    return m


def write_pair(root: Path, stem: str, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(mask.shape + (3,), 90, np.uint8)).save(root / "images" / f"{stem}.jpg")
    Image.fromarray(mask, mode="L").save(root / "masks" / f"{stem}.png")


def test_trimap_band_is_ignored_by_the_folder_loader(tmp_path):
    band = trimap()
    soft = band.copy()
    soft[0, 0] = 37  # one other value: a soft mask, not a trimap
    write_pair(tmp_path, "pet", band)
    write_pair(tmp_path, "soft", soft)
    samples = {s.name: s for s in FolderDataset(tmp_path)}
    pet = samples["pet"]
    assert pet.mask.sum() == 40 * 40 and pet.ignore is not None and pet.ignore.sum() == 48 * 48 - 40 * 40
    assert not (pet.mask & pet.ignore).any()
    assert samples["soft"].ignore is None and samples["soft"].mask.sum() == 48 * 48  # 128 > 127: foreground
    explicit = {s.name: s for s in FolderDataset(tmp_path, ignore_value=0)}["pet"]  # the user's value wins
    assert explicit.ignore.sum() == 64 * 64 - 48 * 48
    assert is_trimap(band) and not is_trimap(soft) and not is_trimap((band == 255).astype(np.uint8) * 255)


def test_metrics_leave_the_band_out():
    band = trimap()
    gt, ignore = band == 255, band == 128
    grown = band > 0  # a prediction that also fills the band
    assert mask_iou(grown, gt) < 0.8
    assert mask_iou(grown, gt, ignore) == 1.0
    assert boundary_iou(gt, gt, ignore=ignore) == 1.0


def test_loss_does_not_see_the_band():
    band = trimap()
    gt, ignore = band == 255, band == 128
    target = low_res_target(gt, 64, (64, 64))
    valid = 1 - low_res_target(ignore, 64, (64, 64))
    assert valid.min() == 0 and valid.max() == 1
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 64, 64)
    changed = torch.where(valid == 0, torch.full_like(logits, 9.0), logits)  # only band pixels move
    assert torch.equal(bce_dice_loss(logits, target, valid), bce_dice_loss(changed, target, valid))
    assert not torch.equal(bce_dice_loss(logits, target), bce_dice_loss(changed, target))


def test_pets_trimaps_in_the_shared_data():
    root = SHARED_DATA / "oxford_pets"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    sample = FolderDataset(root, stems=["Abyssinian_1"])[0]
    raw = np.array(Image.open(root / "masks" / "Abyssinian_1.png"))
    assert sample.ignore is not None
    assert np.array_equal(sample.ignore, raw == 128) and np.array_equal(sample.mask, raw == 255)


def test_plugin_training_objects_carry_the_band_as_zero_weight(tmp_path):
    from conftest import build_small_sam
    from stablesam.models.cache import EmbeddingCache
    from stablesam.modeling import StableSam
    from stablesam.training.objects import prepare_objects

    write_pair(tmp_path, "pet", trimap())
    model = StableSam(build_small_sam())
    (obj,) = prepare_objects([FolderDataset(tmp_path)], model, EmbeddingCache(None), progress=False)
    assert obj.valid is not None and obj.valid.shape == obj.target.shape
    band = low_res_target(trimap() == 128, 256, tuple(obj.valid.shape[-2:]))
    assert torch.allclose(obj.valid, 1 - band)  # 0 on the band, 1 elsewhere (padding included)
    assert obj.valid.min() == 0 and obj.valid[..., -1, -1] == 1
