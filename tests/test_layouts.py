"""Datasets as people have them: image/mask folder pairs of any name, images and masks side by
side, and list files naming several datasets."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stablesam.cli import main
from stablesam.data.datasets import DataError, DataWarning, FolderDataset
from stablesam.data.layouts import find_layout, open_dataset, open_datasets, parse_spec


def put(folder: Path, stem: str, ext: str = ".jpg", mask_folder: Path = None, size=(24, 32)) -> None:
    """An image <stem><ext> in folder and its 0/255 mask <stem>.png in mask_folder (default: same)."""
    folder.mkdir(parents=True, exist_ok=True)
    mask_folder = mask_folder or folder
    mask_folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(folder / f"{stem}{ext}")
    m = np.zeros((h, w), np.uint8)
    m[4:12, 5:15 + len(stem)] = 255  # the width tells the stems apart
    Image.fromarray(m).save(mask_folder / f"{stem}.png")


def widths(ds) -> dict:
    return {s.name: int(s.mask.sum(0).astype(bool).sum()) for s in ds}


def test_im_gt_pair_opens_and_pairs_by_stem(tmp_path):
    root = tmp_path / "DIS-TR"
    for stem in ("a", "bb", "ccc"):
        put(root / "im", stem, mask_folder=root / "gt")
    src = find_layout(root)
    assert (src.images.name, src.masks.name, src.name) == ("im", "gt", "DIS-TR")
    assert widths(open_dataset(root)) == {"a": 11, "bb": 12, "ccc": 13}


def test_explicit_images_colon_masks_and_name(tmp_path):
    base = tmp_path / "ThinObject5K"
    put(base / "images_train", "x1", mask_folder=base / "masks_train")
    put(base / "images_test", "y22", mask_folder=base / "masks_test")
    with pytest.raises(DataError, match="several image/mask folder pairs.*images_train/ \\+ masks_train/"):
        find_layout(base)  # two known pairs in one folder: the user must name one
    ds = open_dataset(f"{base}/images_test:{base}/masks_test")
    assert ds.name == "ThinObject5K" and widths(ds) == {"y22": 13}
    named = open_dataset(f"Thin-TE={base}/images_test:{base}/masks_test")
    assert named.name == "Thin-TE"


def test_side_by_side_layout(tmp_path):
    folder = tmp_path / "ecssd"
    put(folder, "0001")
    put(folder, "0002", ext=".bmp")
    src = find_layout(folder)
    assert src.images == src.masks == folder
    assert widths(open_dataset(folder)) == {"0001": 14, "0002": 14}


def test_ambiguous_pairings_are_refused_naming_the_files(tmp_path):
    folder = tmp_path / "mixed"
    put(folder, "x")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(folder / "x.jpeg")  # a second image for x.png
    put(folder, "y")
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(folder / "z.png")  # a mask without an image
    with pytest.warns(DataWarning) as caught:
        ds = open_dataset(folder)
    messages = " | ".join(str(w.message) for w in caught)
    assert "several images for stem 'x': x.jpeg, x.jpg" in messages
    assert "z.png has no image" in messages
    assert [o.name for o in ds.objects] == ["y"]
    with pytest.raises(DataError, match="x.jpeg, x.jpg"):
        FolderDataset(folder, image_dir=folder, mask_dir=folder, strict=True)


def test_list_files_name_several_datasets(tmp_path):
    put(tmp_path / "DIS5K" / "DIS-VD" / "im", "d", mask_folder=tmp_path / "DIS5K" / "DIS-VD" / "gt")
    put(tmp_path / "cascade_psp" / "ecssd", "e")
    put(tmp_path / "thin" / "COIFT" / "images", "cc", mask_folder=tmp_path / "thin" / "COIFT" / "masks")
    (tmp_path / "sets.txt").write_text("# three test sets\nDIS5K/DIS-VD/im:DIS5K/DIS-VD/gt\ncascade_psp/ecssd\n"
                                       "thin/COIFT  # images/ + masks/\n")
    names = [d.name for d in open_datasets(tmp_path / "sets.txt")]
    assert names == ["DIS-VD", "ecssd", "COIFT"]
    (tmp_path / "sets.json").write_text(json.dumps(
        [{"name": "dis", "images": "DIS5K/DIS-VD/im", "masks": "DIS5K/DIS-VD/gt"}, "E=cascade_psp/ecssd"]))
    assert [s.name for s in parse_spec(str(tmp_path / "sets.json"))] == ["dis", "E"]
    (tmp_path / "twice.txt").write_text("cascade_psp/ecssd\ncascade_psp/ecssd\n")
    with pytest.raises(DataError, match="several datasets the name 'ecssd'"):
        parse_spec(str(tmp_path / "twice.txt"))
    (tmp_path / "loop.txt").write_text("loop.txt\n")
    with pytest.raises(DataError, match="includes itself"):
        parse_spec(str(tmp_path / "loop.txt"))


def test_unknown_layout_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot open dataset .*empty"):
        find_layout(tmp_path / "empty")
    with pytest.raises(DataError, match="mask folder .*nope does not exist"):
        parse_spec(f"{tmp_path}:{tmp_path / 'nope'}")


def test_eval_cli_reads_a_list_file(tmp_path, fake_embedded, capsys):
    put(tmp_path / "A" / "im", "a1", mask_folder=tmp_path / "A" / "gt")
    put(tmp_path / "B", "b1")
    (tmp_path / "sets.txt").write_text("A\nB\n")
    out = tmp_path / "out"
    assert main(["eval", "--data", str(tmp_path / "sets.txt"), "--model", "tiny-sam", "--prompts", "gt-box",
                 "--samples", "1", "--no-cache", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["dataset"] for r in rows} >= {"A", "B"} and all(r["objects"] == 1 for r in rows if r["dataset"] in "AB")
    assert main(["eval", "--data", str(tmp_path / "nowhere.txt"), "--model", "tiny-sam", "--out", str(out.parent / "refused")]) == 2
    assert "nowhere.txt: no such file or folder" in capsys.readouterr().err


def test_shipped_list_files_read_hqseg44k_as_downloaded(tmp_path):
    """docs/datasets/*.txt against a miniature of HQ-SAM's data/ folder, through --data-root."""
    data = tmp_path / "sam-hq" / "data"
    put(data / "DIS5K" / "DIS-TR" / "im", "dis", mask_folder=data / "DIS5K" / "DIS-TR" / "gt")
    put(data / "DIS5K" / "DIS-VD" / "im", "disv", mask_folder=data / "DIS5K" / "DIS-VD" / "gt")
    thin = data / "thin_object_detection"
    put(thin / "ThinObject5K" / "images_train", "t1", mask_folder=thin / "ThinObject5K" / "masks_train")
    put(thin / "ThinObject5K" / "images_test", "t2", mask_folder=thin / "ThinObject5K" / "masks_test")
    put(thin / "COIFT" / "images", "c", mask_folder=thin / "COIFT" / "masks")
    put(thin / "HRSOD" / "images", "h", mask_folder=thin / "HRSOD" / "masks_max255")
    for name in ("fss_all", "DUTS-TR", "DUTS-TE", "ecssd", "MSRA_10K"):
        put(data / "cascade_psp" / name, name.lower().replace("-", ""))
    docs = Path(__file__).resolve().parents[1] / "docs" / "datasets"
    train = open_datasets(docs / "hqseg44k_train.txt", data_root=data)
    assert [d.name for d in train] == ["DIS5K-TR", "ThinObject5K-TR", "FSS", "DUTS-TR", "DUTS-TE", "ECSSD", "MSRA10K"]
    assert all(len(d) == 1 for d in train)
    test = open_datasets(docs / "stable_sam_test.txt", data_root=data)
    assert [(d.name, d.objects[0].name) for d in test] == [
        ("DIS5K-VD", "disv"), ("ThinObject5K-TE", "t2"), ("COIFT", "c"), ("HR-SOD", "h")]
