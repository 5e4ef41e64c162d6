import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from stablesam.data.coco import CocoDataset
from stablesam.data.datasets import DataError, DataWarning, FolderDataset
from stablesam.data.layouts import open_dataset

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"


def write_image(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)  # PNG unless the suffix says otherwise
    return image


def write_mask(path: Path, m: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(m.astype(np.uint8), mode="L")
    if palette:
        im = im.convert("P")
        im.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    im.save(path)


def palette_ids() -> np.ndarray:
    m = np.zeros((12, 16), np.uint8)
    m[1:4, 1:5] = 1  # 12 px
    m[6:10, 8:14] = 2  # 24 px
    m[4, 1:5] = 255  # void strip under object 1
    return m


def grey_mask() -> np.ndarray:
    m = np.zeros((10, 8), np.uint8)
    m[2:6, 3:7] = 255  # 16 px
    m[8, 0:4] = 100  # below the threshold: background
    return m


@pytest.fixture
def good_root(tmp_path: Path) -> Path:
    root = tmp_path / "toy"
    write_image(root / "images" / "pal.jpg", 12, 16)
    write_mask(root / "masks" / "pal.png", palette_ids(), palette=True)
    write_image(root / "images" / "baseball bat00_01.png", 10, 8, seed=1)
    write_mask(root / "masks" / "baseball bat00_01.png", grey_mask())
    return root


def test_folder_auto_mode(good_root: Path):
    with Image.open(good_root / "masks" / "pal.png") as im:
        assert im.mode == "P"
    ds = FolderDataset(good_root)
    assert ds.name == "toy" and len(ds) == 2
    assert [o.name for o in ds.objects] == ["baseball bat00_01", "pal"]
    grey, pal = list(ds)
    assert grey.image.shape == (10, 8, 3) and grey.image.dtype == np.uint8
    assert np.array_equal(grey.image, np.asarray(Image.open(good_root / "images" / "baseball bat00_01.png")))
    assert grey.mask.dtype == bool and grey.mask.sum() == 16 and grey.ignore is None
    assert pal.dataset == "toy" and pal.mask.sum() == 12 + 24
    assert pal.ignore is not None and pal.ignore.sum() == 4 and not (pal.mask & pal.ignore).any()


def test_folder_instances_and_stems(good_root: Path):
    ds = FolderDataset(good_root, mask_mode="instances", ignore_value=255, stems=["pal"])
    assert [o.name for o in ds.objects] == ["pal#1", "pal#2"]
    one, two = ds[0], ds[1]
    assert one.mask.sum() == 12 and two.mask.sum() == 24
    assert one.ignore.sum() == 4
    ds = FolderDataset(good_root, mask_mode="threshold", threshold=50)
    assert ds[0].mask.sum() == 16 + 4  # the 100-valued strip now counts
    with pytest.raises(ValueError, match="mask_mode"):
        FolderDataset(good_root, mask_mode="colour")


def test_folder_bad_pairs_warn_or_raise(good_root: Path):
    images, masks = good_root / "images", good_root / "masks"
    write_image(images / "big.png", 20, 20)
    write_mask(masks / "big.png", np.full((10, 10), 255))  # size mismatch
    write_image(images / "lonely.jpg", 10, 10)  # no mask
    write_mask(masks / "orphan.png", np.full((10, 10), 255))  # no image
    (images / "corrupt.jpg").write_bytes(b"this is not a jpeg")
    write_mask(masks / "corrupt.png", np.full((10, 10), 255))
    with pytest.warns(DataWarning) as record:
        ds = FolderDataset(good_root)
    text = "\n".join(str(w.message) for w in record)
    for name in ("big.png", "lonely.jpg", "orphan.png", "corrupt.jpg"):
        assert name in text
    assert len(ds) == 2
    with pytest.raises(DataError, match="big.png|corrupt.jpg|lonely.jpg|orphan.png"):
        FolderDataset(good_root, strict=True)


def test_folder_bad_at_access(good_root: Path):
    images, masks = good_root / "images", good_root / "masks"
    write_image(images / "empty.png", 10, 8)
    write_mask(masks / "empty.png", np.zeros((10, 8)))
    write_image(images / "trunc.jpg", 64, 64)
    data = (images / "trunc.jpg").read_bytes()
    (images / "trunc.jpg").write_bytes(data[: len(data) // 2])  # header fine, data cut
    write_mask(masks / "trunc.png", np.full((64, 64), 255))
    ds = FolderDataset(good_root)
    assert len(ds) == 4  # cheap checks pass at construction
    with pytest.warns(DataWarning) as record:
        samples = list(ds)
    assert [s.name for s in samples] == ["baseball bat00_01", "pal"]
    text = "\n".join(str(w.message) for w in record)
    assert "empty.png" in text and "trunc.jpg" in text
    i = [o.name for o in ds.objects].index("empty")
    with pytest.raises(DataError, match="empty.png"):
        ds[i]
    with pytest.raises(DataError, match="empty"):
        list(FolderDataset(good_root, strict=True))


def test_folder_layout_errors(tmp_path: Path):
    with pytest.raises(DataError, match="images/ and masks/"):
        FolderDataset(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no usable"):
        FolderDataset(tmp_path)


@pytest.fixture
def coco_json(tmp_path: Path) -> Path:
    image_dir = tmp_path / "images"
    write_image(image_dir / "img one.jpg", 30, 40)
    poly = [[10, 5, 20, 5, 20, 15, 10, 15]]  # pixels cols 10..19, rows 5..14
    rle_mask = np.zeros((30, 40), np.uint8, order="F")
    rle_mask[20:24, 30:33] = 1  # 12 px
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    data = {
        "images": [{"id": 7, "file_name": "img one.jpg", "height": 30, "width": 40}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "segmentation": poly, "area": 100.0,
             "bbox": [10, 5, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": rle, "area": 12.0,
             "bbox": [30, 20, 3, 4], "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 1, "segmentation": rle, "area": 12.0,
             "bbox": [30, 20, 3, 4], "iscrowd": 1},
        ],
    }
    path = tmp_path / "toy_coco.json"
    path.write_text(json.dumps(data))
    return path


def test_coco(coco_json: Path):
    ds = CocoDataset(coco_json, coco_json.parent / "images")
    assert ds.name == "toy_coco"
    assert [o.name for o in ds.objects] == ["img one#1", "img one#2"]  # crowd skipped
    poly, rle = list(ds)
    expected = np.zeros((30, 40), bool)
    expected[5:15, 10:20] = True
    assert np.array_equal(poly.mask, expected)
    assert rle.mask.sum() == 12 and rle.mask[20:24, 30:33].all()
    assert poly.image.shape == (30, 40, 3) and poly.ignore is None
    assert [o.name for o in CocoDataset(coco_json, coco_json.parent / "images", min_area=50).objects] == ["img one#1"]
    with pytest.raises(DataError, match="no usable"):
        CocoDataset(coco_json, coco_json.parent / "images", min_area=1000)


def test_coco_missing_image(coco_json: Path):
    (coco_json.parent / "images" / "img one.jpg").unlink()
    with pytest.warns(DataWarning, match="img one.jpg"), pytest.raises(DataError, match="no usable"):
        CocoDataset(coco_json, coco_json.parent / "images")
    with pytest.raises(DataError, match="img one.jpg"):
        CocoDataset(coco_json, coco_json.parent / "images", strict=True)


def test_open_dataset(good_root: Path, coco_json: Path, tmp_path: Path):
    assert isinstance(open_dataset(good_root), FolderDataset)
    ds = open_dataset(coco_json, min_area=50)  # image_dir defaults to the sibling images/
    assert isinstance(ds, CocoDataset) and len(ds) == 1
    with pytest.raises(DataError, match="no such file or folder"):
        open_dataset(tmp_path / "nowhere")


def test_shared_data_pairs():
    davis, coco = SHARED_DATA / "davis345", SHARED_DATA / "coco_mval"
    if not (davis / "masks" / "000.png").is_file() or not (coco / "masks").is_dir():
        pytest.skip(f"shared data not found under {SHARED_DATA}")
    ds = open_dataset(davis, stems=["000", "001"])
    assert [o.name for o in ds.objects] == ["000", "001"]
    s = ds[0]
    assert s.image.shape == (480, 854, 3) and s.mask.shape == (480, 854) and s.mask.any()
    stem = sorted(p.stem for p in (coco / "masks").glob("baseball bat*.png"))[0]  # space in the stem
    s = open_dataset(coco, stems=[stem])[0]
    assert s.name == stem and s.mask.any() and s.image.shape[:2] == s.mask.shape
