"""The tiny SAM's architecture (conv encoder + SAM's standard prompt encoder and decoder), its
size limit, its training script's data/loss pipeline, and the committed train/val split."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam

from conftest import SHARED_DATA
from stablesam.models.files import load_sam_file, save_sam_file
from stablesam.data.datasets import load_split
from stablesam.modeling.small_sam import TINY_SAM_ARCH, ConvImageEncoder, build_small_sam

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from tiny_sam import augment, loss, split  # noqa: E402
from tiny_sam.schedule import Ema, RunConfig  # noqa: E402

SPLITS = REPO / "splits"
SIZE_LIMIT = 25 * 1000 * 1000  # bytes: the base weights file must stay <= 25 MB
ENCODER_LIMIT = 3_000_000  # parameters (v2: 2.94 M)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a busy 2-core machine two OpenMP threads make these passes ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    assert encoder <= ENCODER_LIMIT, f"encoder has {encoder} parameters"
    path = tmp_path / "tiny_sam.pt"  # shipped as float16, as build_embedded.sh exports it
    save_sam_file(tiny_sam, TINY_SAM_ARCH, path, meta={"steps": 0}, dtype="float16")
    assert path.stat().st_size <= SIZE_LIMIT, f"{path.stat().st_size} bytes"
    loaded = load_sam_file(path)
    for k, v in tiny_sam.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.half().to(v.dtype)), k


def test_conv_encoder_rejects_bad_arch():
    with pytest.raises(ValueError, match="stride 8 or 16"):
        build_small_sam({**TINY_SAM_ARCH, "patch_size": 32})
    with pytest.raises(ValueError, match="multiple of 32"):  # 4 stages: stride 32
        build_small_sam({**TINY_SAM_ARCH, "img_size": 500})
    with pytest.raises(ValueError, match="3 or 4 stage"):
        build_small_sam({**TINY_SAM_ARCH, "widths": [8, 8], "depths": [1, 1]})
    with pytest.raises(ValueError, match="odd"):
        build_small_sam({**TINY_SAM_ARCH, "kernel_size": [3, 3, 5, 4]})


def test_pyramid_encoder_gives_sams_64x64_grid_from_every_stage():
    """Stride 8 with a stride-32 stage: a 64 x 64 embedding that the deepest stage reaches."""
    arch = {**TINY_SAM_ARCH, "patch_size": 8, "widths": [8, 8, 16, 16], "depths": [1, 1, 1, 1],
            "kernel_size": [3, 3, 5, 7]}
    torch.manual_seed(0)
    sam = build_small_sam(arch)
    assert sam.prompt_encoder.image_embedding_size == (64, 64)
    x = torch.randn(1, 3, 512, 512, requires_grad=True)
    emb = sam.image_encoder(x)
    assert emb.shape == (1, 256, 64, 64)
    # the centre cell depends on pixels far outside a stride-8 stage's reach (via stage 4)
    emb[0, :, 32, 32].sum().backward()
    reach = (x.grad[0].abs().sum(0) > 0).nonzero()
    assert (reach.max(0).values - reach.min(0).values).min() > 200
    assert len(sam.image_encoder.laterals) == 2  # strides 8 and 16 join the stride-32 top


def test_float16_export_halves_the_file_and_loads_as_float32(tiny_sam, tmp_path):
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_sam_file(tiny_sam, TINY_SAM_ARCH, full)
    save_sam_file(tiny_sam, TINY_SAM_ARCH, half, dtype="float16")
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_sam_file(half)
    for k, v in tiny_sam.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype, k
        if v.is_floating_point():
            assert torch.equal(w, v.half().float()), k


def synthetic_images(n=3, ignore=False):
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        h, w = (512, 384) if i % 2 else (288, 512)
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        obj = np.zeros((h, w), np.uint8)
        obj[40 + 10 * i:200, 60:250 - 20 * i] = 255
        part = np.zeros_like(obj)
        part[40 + 10 * i:100, 60:150] = 255
        band = None
        if ignore:  # a 6-px ignore band around the object, like a trimap's
            band = np.zeros_like(obj)
            band[34 + 10 * i:206, 54:256 - 20 * i] = 255
            band[obj > 0] = 0
        images.append(augment.TrainImage(f"synthetic/{i}", image, [obj, part], band))
    return images


def batch(images, step, cfg, aug):
    return augment.build_batch(images, step, cfg.seed, cfg.batch_size, cfg.prompts_per_image,
                               cfg.arch["img_size"], cfg.loss_res, aug)


def test_batches_are_a_pure_function_of_seed_and_step():
    images = synthetic_images()
    cfg = RunConfig(arch=TINY_SAM_ARCH, batch_size=2, prompts_per_image=2)
    aug = augment.AugConfig(paste_prob=0.5)
    a, b = batch(images, 7, cfg, aug), batch(images, 7, cfg, aug)
    c = batch(images, 8, cfg, aug)
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
    images = synthetic_images(2)
    arch = {**TINY_SAM_ARCH, "widths": [8, 8, 16], "depths": [0, 1, 1], "kernel_size": 3}
    cfg = RunConfig(arch=arch, batch_size=2, prompts_per_image=1, loss_res=128)
    torch.manual_seed(0)
    sam = build_small_sam(arch).train()
    value, parts = loss.batch_loss(sam, batch(images, 0, cfg, augment.AugConfig()), cfg.loss_res, 1.0, autocast=False)
    assert torch.isfinite(value) and parts["mask_loss"] > 0
    value.backward()
    for module in (sam.image_encoder, sam.mask_decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_ignore_band_travels_with_augmentation_and_is_left_out_of_the_loss():
    """The ignore band follows flips/crops into the batch, and the loss does not see it: a batch
    whose targets differ only inside the band has the same loss."""
    images = synthetic_images(2, ignore=True)
    arch = {**TINY_SAM_ARCH, "widths": [8, 8, 16], "depths": [0, 1, 1], "kernel_size": 3}
    cfg = RunConfig(arch=arch, batch_size=2, prompts_per_image=2, loss_res=128)
    aug = augment.AugConfig(paste_prob=0.0, color_prob=0.0)
    b = batch(images, 3, cfg, aug)
    for prompts in b.prompts:
        for p in prompts:
            assert p.valid is not None and p.valid.shape == p.target.shape
            band = p.valid < 0.5
            assert band.sum() > 50 and p.target[band].max() < 0.5  # the band is not foreground
    torch.manual_seed(0)
    sam = build_small_sam(arch)
    with torch.no_grad():
        before, _ = loss.batch_loss(sam, b, cfg.loss_res, 1.0, autocast=False)
        for prompts in b.prompts:
            for p in prompts:
                p.target = np.where(p.valid == 0, 1.0, p.target).astype(np.float32)  # relabel the band
        after, _ = loss.batch_loss(sam, b, cfg.loss_res, 1.0, autocast=False)
        for prompts in b.prompts:
            for p in prompts:
                p.valid = None
        counted, _ = loss.batch_loss(sam, b, cfg.loss_res, 1.0, autocast=False)
    assert torch.allclose(before, after, atol=1e-6)
    assert not torch.allclose(before, counted, atol=1e-3)


def test_ema_starts_at_the_weights_and_follows_them():
    net = torch.nn.Linear(2, 2)
    ema = Ema(net, decay=0.9)
    start = {k: v.clone() for k, v in ema.state.items()}
    assert all(torch.equal(start[k], v) for k, v in net.state_dict().items())
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, step=1000)
    assert torch.allclose(ema.state["weight"], start["weight"] + 0.1)
    other = torch.nn.Linear(2, 2)
    ema.copy_to(other)
    assert torch.equal(other.weight, ema.state["weight"])


# --------------------------------------------------------------------------- the committed split
def committed_split():
    if not (SPLITS / "train.txt").is_file() or not (SPLITS / "val.txt").is_file():
        pytest.fail("splits/train.txt and splits/val.txt must be committed (scripts/train_tiny_sam.py --write-split)")
    return load_split(SPLITS / "train.txt"), load_split(SPLITS / "val.txt")


def test_committed_split_is_disjoint():
    train, val = committed_split()
    flat = [[f"{d}/{s}" for d, stems in part.items() for s in stems] for part in (train, val)]
    assert not set(flat[0]) & set(flat[1])
    split.check_split(*flat)  # also: no COCO image id on both sides
    assert set(train) == set(val) == set(split.DATASETS)
    for dataset in split.DATASETS:
        share = len(val[dataset]) / (len(val[dataset]) + len(train[dataset]))
        assert 0.15 <= share <= 0.25, (dataset, share)
    davis_val = sorted(int(s) for s in val["davis345"])
    assert all(any(a <= f <= b for a, b in split.DAVIS_VAL_BLOCKS) for f in davis_val)
    ecssd_val = sorted(int(s) for s in val["ecssd"])
    assert all((f - 1) // 10 % 5 == 2 for f in ecssd_val)  # whole blocks of 10 image numbers
    for breed in ("Abyssinian", "Bengal", "american_bulldog"):  # every breed gets its ~20 %
        n_val = sum(s.startswith(breed + "_") for s in val["oxford_pets"])
        n_all = n_val + sum(s.startswith(breed + "_") for s in train["oxford_pets"])
        assert 0.18 <= n_val / n_all <= 0.22, (breed, n_val, n_all)


def test_split_of_the_three_v1_sets_is_unchanged():
    """v1's 916 / 236 assignment of DAVIS, COCO_MVal and the horses stays as it was."""
    train, val = committed_split()
    old = {"davis345": (273, 72), "coco_mval": (384, 96), "weizmann_horse": (259, 68)}
    for dataset, (n_train, n_val) in old.items():
        assert (len(train[dataset]), len(val[dataset])) == (n_train, n_val)
    assert {"000", "047", "076", "193", "320"} & val["davis345"] == {"047", "076", "193", "320"}
    assert {f"horse{i:03d}" for i in range(21, 31)} <= val["weizmann_horse"]


def test_committed_split_matches_the_data_and_make_split():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}: cannot check the split's stems exist")
    train, val = committed_split()
    stems = {}
    for dataset in split.DATASETS:
        root = SHARED_DATA / dataset
        images = {p.stem for p in (root / "images").iterdir()}
        masks = {p.stem for p in (root / "masks").iterdir() if p.suffix == ".png"}
        listed = train[dataset] | val[dataset]
        missing = sorted(listed - (images & masks))
        assert not missing, f"{dataset}: listed stems without image+mask: {missing[:5]}"
        stems[dataset] = sorted(images & masks)
    new_train, new_val = split.make_split(stems)
    flat = [sorted(f"{d}/{s}" for d, ss in part.items() for s in ss) for part in (train, val)]
    assert (new_train, new_val) == (flat[0], flat[1]), "committed split differs from make_split(): rerun --write-split"
