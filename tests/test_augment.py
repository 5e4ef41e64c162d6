"""Augmented views for plugin training (`stablesam.data.augment`, `stablesam train --augment N`):
the object stays whole and aligned with its image, views are a pure function of their seed, and
each view is embedded once and cached."""

import json

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SMALL_ARCH, build_small_sam
from stablesam import StableSam
from stablesam.cli import main
from stablesam.data.augment import MIN_CROP, augmented_view, crop_window, photometric
from stablesam.data.layouts import open_dataset
from stablesam.models.cache import EmbeddingCache
from stablesam.models.files import save_sam_file
from stablesam.training.loop import step_items
from stablesam.training.objects import prepare_objects, view_rng
from stablesam.training.record import TrainConfig
from helpers import make_folder, train_args, train_setup  # noqa: F401 (a fixture)


def toy_object(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (90, 140, 3), dtype=np.uint8)
    mask = np.zeros((90, 140), bool)
    mask[30:60, 70:110] = True
    return image, mask


@settings(max_examples=60, deadline=None)
@given(h=st.integers(8, 120), w=st.integers(8, 120), data=st.data())
def test_the_crop_window_holds_the_whole_object_and_is_not_too_small(h, w, data):
    y0 = data.draw(st.integers(0, h - 1))
    y1 = data.draw(st.integers(y0 + 1, h))
    x0 = data.draw(st.integers(0, w - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    wy0, wy1, wx0, wx1 = crop_window(mask, np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))))
    assert 0 <= wy0 <= y0 and y1 <= wy1 <= h and 0 <= wx0 <= x0 and x1 <= wx1 <= w
    assert wy1 - wy0 >= min(h, round(MIN_CROP * h)) and wx1 - wx0 >= min(w, round(MIN_CROP * w))


def test_a_view_keeps_the_object_whole_and_aligned_with_image_and_ignore():
    image, mask = toy_object()
    # the image's red channel is the mask, so after the same crop and flip they must still agree
    image[..., 0] = np.where(mask, 255, 0)
    image[..., 1:] = 128
    crops = set()
    for view in range(1, 9):
        rng = np.random.default_rng(view)
        out, out_mask, out_ignore = augmented_view(image, mask, mask.copy(), rng)
        assert out.shape[:2] == out_mask.shape and out.dtype == np.uint8
        assert out_mask.sum() == mask.sum()  # the whole object is in every view
        assert np.array_equal(out_ignore, out_mask)  # ignore follows the same crop and flip
        red_where_object = out[..., 0][out_mask].mean()
        red_elsewhere = out[..., 0][~out_mask].mean()
        assert red_where_object > red_elsewhere + 100
        crops.add(out_mask.shape)
    assert len(crops) > 1  # the crop varies between views


def test_views_are_a_pure_function_of_their_seed():
    image, mask = toy_object()
    a = augmented_view(image, mask, None, view_rng(0, "toy/a", 1))
    b = augmented_view(image, mask, None, view_rng(0, "toy/a", 1))
    c = augmented_view(image, mask, None, view_rng(0, "toy/a", 2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] is None
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_photometric_jitter_changes_colours_not_layout():
    image, _ = toy_object()
    out = photometric(image, np.random.default_rng(3))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image.astype(int)).mean() > 1
    # a monotone-ish map of brightness: the ordering of the grey levels mostly survives
    grey, grey_out = image.mean(-1).ravel(), out.mean(-1).ravel()
    assert np.corrcoef(grey, grey_out)[0, 1] > 0.8


def test_prepare_objects_embeds_each_view_once_and_steps_draw_views(tmp_path):
    torch.manual_seed(0)
    model = StableSam(build_small_sam())
    ds = open_dataset(str(make_folder(tmp_path / "toy", n=3)))
    cache = EmbeddingCache(tmp_path / "cache")
    objects = prepare_objects([ds], model, cache, progress=False, augment=2, seed=0)
    assert [len(o.views) for o in objects] == [2, 2, 2]
    assert cache.encoder_calls == 3 * 3  # the image and its two views
    view = objects[0].views[0]
    assert view.mask().sum() == objects[0].mask().sum() and view.target.shape == objects[0].target.shape
    again = EmbeddingCache(tmp_path / "cache")
    prepare_objects([ds], model, again, progress=False, augment=2, seed=0)
    assert again.encoder_calls == 0  # every view came from the cache
    config = TrainConfig(model="x", data=["toy"], batch_size=3, augment=2)
    drawn = [obj.name for step in range(8) for obj, _, _ in step_items(objects, step, config, 0, 1)]
    assert any("#" in name for name in drawn) and any("#" not in name for name in drawn)
    assert drawn == [obj.name for step in range(8) for obj, _, _ in step_items(objects, step, config, 0, 1)]


def test_train_with_augment_records_it_and_refuses_to_resume_with_another(train_setup, capsys):
    sam_file, data, tmp = train_setup
    out = tmp / "run"
    args = train_args(sam_file, data, out, "--steps", "2", "--batch-size", "2", "--checkpoint-every", "1")
    assert main([*args, "--augment", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["augment"] == 1
    assert main([*args, "--resume"]) == 2  # --augment 0 is another run
    assert "differs in: augment" in capsys.readouterr().err
    assert main([*args, "--augment", "-1", "--out", str(tmp / "bad")]) == 2
    assert "--augment = -1 is out of range" in capsys.readouterr().err
