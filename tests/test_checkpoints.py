import argparse
import zipfile

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry

from conftest import build_small_sam, perturb_plugins
from stablesam import CheckpointError, StableSam, StableSamPredictor, attach_plugin, load_model, read_plugin, save_plugin


@pytest.fixture(scope="module")
def vit_b_file(tmp_path_factory):
    """A random-init ViT-B state dict saved the way Meta's sam_vit_b_01ec64.pth is."""
    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]()
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_b_random.pth"
    torch.save(sam.state_dict(), path)
    return path


@pytest.mark.slow
def test_official_checkpoint_loads(vit_b_file):
    model = load_model(vit_b_file, "vit_b", device="cpu")
    assert isinstance(model, StableSam) and not model.plugins_enabled
    ref = torch.load(vit_b_file, weights_only=True)
    for k, v in model.sam.state_dict().items():
        assert torch.equal(v, ref[k]), k
    pred = StableSamPredictor(model)
    pred.set_image(np.zeros((64, 96, 3), np.uint8))
    masks, scores, low = pred.predict(box=np.array([10, 10, 50, 40]), multimask_output=False)
    assert masks.shape == (1, 64, 96) and low.shape == (1, 256, 256)


def _claim_cuda(src, dst):
    """Rewrite a torch.save zip so its storages say they live on cuda:0 (a GPU-saved file)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zout.writestr(item, data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks loading a GPU-saved file without a GPU")
def test_gpu_saved_checkpoint_loads_on_cpu(tmp_path):
    sam = build_small_sam()
    src, dst = tmp_path / "cpu.pth", tmp_path / "gpu.pth"
    torch.save(sam.mask_decoder.state_dict(), src)
    _claim_cuda(src, dst)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(dst, weights_only=True)  # the rewrite really made a "GPU" file
    from stablesam.backends.official import read_weights

    state = read_weights(dst, "cpu")
    assert all(v.device.type == "cpu" for v in state.values())
    assert torch.equal(state["iou_token.weight"], sam.mask_decoder.iou_token.weight)


def test_truncated_checkpoint(vit_b_file, tmp_path):
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(vit_b_file.read_bytes()[:1_000_000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(bad, "vit_b", device="cpu")


def test_wrong_model_type(vit_b_file):
    with pytest.raises(CheckpointError, match="looks like a vit_b checkpoint") as e:
        load_model(vit_b_file, "vit_l", device="cpu")
    assert "shape mismatches" in str(e.value)
    with pytest.raises(CheckpointError, match="unknown model type 'vit_x'"):
        load_model(vit_b_file, "vit_x", device="cpu")


def test_foreign_checkpoints(tmp_path):
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3), "fc.bias": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="no mask_decoder") as e:
        load_model(foreign, "vit_b", device="cpu")
    assert "missing keys" in str(e.value) and "unexpected keys" in str(e.value)

    evil = tmp_path / "pickled.pth"
    torch.save({"obj": argparse.Namespace(code="anything")}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(evil, "vit_b", device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pth", "vit_b", device="cpu")


def test_plugin_file_roundtrip_and_base_check(tmp_path, image):
    sam = build_small_sam(seed=0)
    model = StableSam(sam)
    perturb_plugins(model)
    path = tmp_path / "plugin.pt"
    save_plugin(model, path, base_name="small-test-sam", meta={"steps": 3})
    assert path.stat().st_size < 1_000_000
    assert not list(tmp_path.glob("*.tmp"))
    info = read_plugin(path)
    assert info["base"]["name"] == "small-test-sam" and info["meta"]["steps"] == 3

    loaded = attach_plugin(build_small_sam(seed=0), path)
    for k, v in model.plugin_state_dict().items():
        assert torch.equal(loaded.plugin_state_dict()[k], v)
    p1, p2 = StableSamPredictor(model), StableSamPredictor(loaded)
    p1.set_image(image); p2.set_image(image)
    box = np.array([40.0, 25.0, 140.0, 95.0])
    assert np.array_equal(p1.predict(box=box)[2], p2.predict(box=box)[2])

    other = build_small_sam(seed=5)
    with pytest.raises(CheckpointError, match="trained for base model 'small-test-sam'"):
        attach_plugin(other, path)
    forced = attach_plugin(other, path, force=True)
    assert forced.plugins_enabled

    sam_file = tmp_path / "sam_state.pt"
    torch.save(sam.state_dict(), sam_file)
    with pytest.raises(CheckpointError, match="not a stablesam plugin"):
        read_plugin(sam_file)
