"""The tiny SAM's architecture (conv encoder + SAM's standard prompt encoder and decoder), its
size limit, its training script's data/loss pipeline, and the committed train/val split."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam

from conftest import SHARED_DATA
from stablesam.checkpoints import load_sam_file, save_sam_file
from stablesam.data import load_split
from stablesam.modeling.small_sam import TINY_SAM_ARCH, ConvImageEncoder, build_small_sam

REPO = Path(__file__).resolve().parents[1]
SPLITS = REPO / "splits"
SIZE_LIMIT = 25 * 1000 * 1000  # bytes: the base weights file must stay <= 25 MB
ENCODER_LIMIT = 2_000_000  # parameters


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a busy 2-core machine two OpenMP threads make these passes ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_script():
    spec = importlib.util.spec_from_file_location("train_tiny_sam", REPO / "scripts" / "train_tiny_sam.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_sam() -> Sam:
    torch.manual_seed(0)
    return build_small_sam(TINY_SAM_ARCH)


def test_conv_sam_is_a_standard_sam_with_32x32_embedding(tiny_sam):
    assert isinstance(tiny_sam, Sam)
    assert isinstance(tiny_sam.image_encoder, ConvImageEncoder)
    assert isinstance(tiny_sam.prompt_encoder, PromptEncoder) and isinstance(tiny_sam.mask_decoder, MaskDecoder)
    assert tiny_sam.image_encoder.img_size == 512
    assert tiny_sam.prompt_encoder.image_embedding_size == (32, 32)
    with torch.no_grad():
        emb = tiny_sam.image_encoder(tiny_sam.preprocess(torch.randint(0, 255, (1, 3, 512, 384)).float()))
        assert emb.shape == (1, 256, 32, 32) and emb.is_contiguous() and torch.isfinite(emb).all()
        sparse, dense = tiny_sam.prompt_encoder(points=None, boxes=torch.tensor([[10.0, 20.0, 300.0, 400.0]]), masks=None)
        masks, iou = tiny_sam.mask_decoder(emb, tiny_sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True)
    assert masks.shape == (1, 3, 128, 128) and iou.shape == (1, 3)


def test_tiny_sam_size_limits_and_file_roundtrip(tiny_sam, tmp_path):
    encoder = sum(p.numel() for p in tiny_sam.image_encoder.parameters())
    total = sum(t.numel() * t.element_size() for t in tiny_sam.state_dict().values())
    assert encoder <= ENCODER_LIMIT, f"encoder has {encoder} parameters"
    assert total <= SIZE_LIMIT - 100_000, f"state dict holds {total} bytes"
    path = tmp_path / "tiny_sam.pt"
    save_sam_file(tiny_sam, TINY_SAM_ARCH, path, meta={"steps": 0})
    assert path.stat().st_size <= SIZE_LIMIT, f"{path.stat().st_size} bytes"
    loaded = load_sam_file(path)
    for k, v in tiny_sam.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_conv_encoder_rejects_bad_arch():
    with pytest.raises(ValueError, match="stride 16"):
        build_small_sam({**TINY_SAM_ARCH, "patch_size": 8})
    with pytest.raises(ValueError, match="multiple of 16"):
        build_small_sam({**TINY_SAM_ARCH, "img_size": 500})


def synthetic_images(script, n=3):
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        h, w = (512, 384) if i % 2 else (288, 512)
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        obj = np.zeros((h, w), np.uint8)
        obj[40 + 10 * i:200, 60:250 - 20 * i] = 255
        part = np.zeros_like(obj)
        part[40 + 10 * i:100, 60:150] = 255
        images.append(script.TrainImage(f"synthetic/{i}", image, [obj, part]))
    return images


def test_batches_are_a_pure_function_of_seed_and_step():
    script = load_script()
    images = synthetic_images(script)
    cfg = script.RunConfig(arch=TINY_SAM_ARCH, batch_size=2, prompts_per_image=2)
    aug = script.AugConfig(paste_prob=0.5)
    a, b = script.build_batch(images, 7, cfg, aug), script.build_batch(images, 7, cfg, aug)
    c = script.build_batch(images, 8, cfg, aug)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    for pa, pb, (h, w) in zip(a.prompts, b.prompts, a.sizes):
        assert max(h, w) == 512
        for p, q in zip(pa, pb):
            assert np.array_equal(p.target, q.target) and p.kind == q.kind
            assert p.target.shape == (cfg.loss_res, cfg.loss_res) and 0 <= p.target.min() and p.target.max() <= 1
            assert p.target.sum() > 0
            xy = p.boxes.reshape(-1, 2) if p.boxes is not None else p.points.reshape(-1, 2)
            assert (xy >= 0).all() and (xy[:, 0] <= w - 1).all() and (xy[:, 1] <= h - 1).all()
            assert p.multimask == (p.kind == "click")


def test_one_training_step_reaches_every_module():
    script = load_script()
    images = synthetic_images(script, 2)
    arch = {**TINY_SAM_ARCH, "widths": [8, 8, 16], "depths": [0, 1, 1]}
    cfg = script.RunConfig(arch=arch, batch_size=2, prompts_per_image=1, loss_res=128)
    torch.manual_seed(0)
    sam = build_small_sam(arch).train()
    loss, parts = script.batch_loss(sam, script.build_batch(images, 0, cfg, script.AugConfig()), cfg, autocast=False)
    assert torch.isfinite(loss) and parts["mask_loss"] > 0
    loss.backward()
    for module in (sam.image_encoder, sam.mask_decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


# --------------------------------------------------------------------------- the committed split
def committed_split():
    if not (SPLITS / "train.txt").is_file() or not (SPLITS / "val.txt").is_file():
        pytest.fail("splits/train.txt and splits/val.txt must be committed (scripts/train_tiny_sam.py --write-split)")
    return load_split(SPLITS / "train.txt"), load_split(SPLITS / "val.txt")


def test_committed_split_is_disjoint():
    script = load_script()
    train, val = committed_split()
    flat = [[f"{d}/{s}" for d, stems in part.items() for s in stems] for part in (train, val)]
    assert not set(flat[0]) & set(flat[1])
    script.check_split(*flat)  # also: no COCO image id on both sides
    assert set(train) == set(val) == set(script.DATASETS)
    for dataset in script.DATASETS:
        share = len(val[dataset]) / (len(val[dataset]) + len(train[dataset]))
        assert 0.15 <= share <= 0.25, (dataset, share)
    davis_val = sorted(int(s) for s in val["davis345"])
    assert all(any(a <= f <= b for a, b in script.DAVIS_VAL_BLOCKS) for f in davis_val)


def test_committed_split_matches_the_data_and_make_split():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}: cannot check the split's stems exist")
    script = load_script()
    train, val = committed_split()
    stems = {}
    for dataset in script.DATASETS:
        root = SHARED_DATA / dataset
        images = {p.stem for p in (root / "images").iterdir()}
        masks = {p.stem for p in (root / "masks").iterdir() if p.suffix == ".png"}
        listed = train[dataset] | val[dataset]
        missing = sorted(listed - (images & masks))
        assert not missing, f"{dataset}: listed stems without image+mask: {missing[:5]}"
        stems[dataset] = sorted(images & masks)
    new_train, new_val = script.make_split(stems)
    flat = [sorted(f"{d}/{s}" for d, ss in part.items() for s in ss) for part in (train, val)]
    assert (new_train, new_val) == (flat[0], flat[1]), "committed split differs from make_split(): rerun --write-split"
