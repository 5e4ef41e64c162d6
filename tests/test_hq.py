"""HQ-SAM (segment_anything_hq): a random-init Light HQ-SAM (`vit_tiny`, the package's smallest
config) saved as an official checkpoint, with Stable-SAM's plugins in its decoder."""

import numpy as np
import pytest
import torch

pytest.importorskip("segment_anything_hq", reason="HQ-SAM tests need the [hq] extra (segment-anything-hq, timm)")

from helpers import PROMPTS, assert_batch_equals_singles, assert_identity, assert_one_step_trains_only_plugins
from conftest import build_small_sam, perturb_plugins
from segment_anything_hq import SamPredictor as HqPredictor
from stablesam import CheckpointError, StableSam, StableSamPredictor, save_plugin
from stablesam.backends import Embedding, get_backend
from stablesam.models.files import attach_plugin

IMAGE = np.random.default_rng(0).integers(0, 255, size=(120, 180, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def hq(tmp_path_factory):
    """(official checkpoint path, loaded model, HQ's own predictor with the image set)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hq") / "sam_hq_vit_tiny.pth"
    torch.save(get_backend("hq").build("hq_vit_tiny").state_dict(), path)
    sam = get_backend("hq").load("hq_vit_tiny", path, torch.device("cpu"))
    plain = HqPredictor(sam)
    plain.set_image(IMAGE)  # the only encoder run of this module
    return path, sam, plain


@pytest.fixture
def stable(hq):
    _, sam, plain = hq
    model = StableSam(sam)
    pred = StableSamPredictor(model)
    pred.set_embedding(Embedding(plain.features, plain.input_size, plain.original_size,
                                 {"interm": [plain.interm_features[0]]}))
    yield model, pred
    model.remove_hooks()


@pytest.mark.parametrize("hq_token_only", [False, True])
@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_untrained_stable_hq_is_hq(hq, stable, prompt, multimask, hq_token_only):
    model, pred = stable
    assert model.family == "hq" and type(pred).__name__ == "StableHqPredictor"
    assert_identity(model, pred, hq[2], prompt, multimask, hq_token_only=hq_token_only)


def test_plugin_count_same_as_sam1(stable):
    assert stable[0].num_plugin_parameters() == StableSam(build_small_sam()).num_plugin_parameters()


def test_batch_equals_single_calls(stable):
    assert_batch_equals_singles(*stable)


def test_one_step_changes_only_plugins(hq, stable):
    plain = hq[2]
    emb = Embedding(plain.features, plain.input_size, plain.original_size, {"interm": [plain.interm_features[0]]})
    assert_one_step_trains_only_plugins(stable[0], emb, torch.tensor([[20.0, 30.0, 600.0, 500.0]]))


def test_checkpoints_and_plugin_family(hq, stable, tmp_path):
    path, sam, _ = hq
    backend = get_backend("hq")
    sam1 = tmp_path / "sam_vit_b.pth"
    torch.save(build_small_sam().state_dict(), sam1)
    with pytest.raises(CheckpointError, match="this is a SAM 1 checkpoint, not HQ-SAM"):
        backend.load("hq_vit_tiny", sam1, torch.device("cpu"))
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        backend.load("hq_vit_tiny", truncated, torch.device("cpu"))
    with pytest.raises(CheckpointError, match="this is a HQ-SAM checkpoint, not SAM 1"):
        from stablesam import load_model

        load_model(path, "vit_b", device="cpu")
    model = stable[0]
    perturb_plugins(model)
    plugin = tmp_path / "plugin.pt"
    save_plugin(model, plugin, base_name="hq_vit_tiny:sam_hq_vit_tiny.pth")
    assert torch.load(plugin, weights_only=True)["base"]["family"] == "hq"
    again = attach_plugin(sam, plugin)
    assert all(torch.equal(v, again.plugin_state_dict()[k]) for k, v in model.plugin_state_dict().items())
    again.remove_hooks()
    with pytest.raises(CheckpointError, match="trained for a HQ-SAM model.*not SAM 1"):
        attach_plugin(build_small_sam(), plugin, force=True)


@pytest.mark.parametrize("hq_token_only", [False, True])
def test_the_fit_gate_reads_hqs_own_mask(hq, hq_token_only):
    from stablesam.modeling import PluginConfig
    from stablesam.modeling.box_fit import box_fit

    _, sam, plain = hq
    model = StableSam(sam, PluginConfig(routing_inputs=("prompt", "iou", "fit")))
    pred = StableSamPredictor(model)
    pred.set_embedding(Embedding(plain.features, plain.input_size, plain.original_size,
                                 {"interm": [plain.interm_features[0]]}))
    try:
        assert_identity(model, pred, plain, "box", False, hq_token_only=hq_token_only)
        low = plain.predict(**PROMPTS["box"], multimask_output=False, return_logits=True,
                            hq_token_only=hq_token_only)[2]
        pred.predict(**PROMPTS["box"], multimask_output=False, hq_token_only=hq_token_only)
        box = torch.as_tensor(plain.transform.apply_boxes(PROMPTS["box"]["box"], plain.original_size)).float()
        expected = box_fit(torch.as_tensor(low) > 0, box * low.shape[-1] / sam.image_encoder.img_size)
        assert torch.allclose(model.last_fit, torch.tensor([[expected.item(), 1.0]]), atol=1e-6)
    finally:
        model.remove_hooks()


@pytest.mark.parametrize("hq_token_only", [False, True])
def test_refinement_decodes_hqs_own_mask_box_again(hq, hq_token_only):
    from stablesam.modeling import PluginConfig

    _, sam, plain = hq
    model = StableSam(sam, PluginConfig(refine="box", refine_margin=0.1))
    pred = StableSamPredictor(model)
    pred.set_embedding(Embedding(plain.features, plain.input_size, plain.original_size,
                                 {"interm": [plain.interm_features[0]]}))
    try:
        box = torch.as_tensor(plain.transform.apply_boxes(PROMPTS["box"]["box"], plain.original_size)).float()
        first = plain.predict_torch(None, None, box, multimask_output=False, return_logits=True,
                                    hq_token_only=hq_token_only)[2]
        ys, xs = np.nonzero(first[0, 0].numpy() > 0)
        assert len(xs), "HQ's first mask of the test box is empty"
        scale = sam.image_encoder.img_size / first.shape[-1]
        x0, y0, x1, y1 = xs.min() * scale, ys.min() * scale, (xs.max() + 1) * scale, (ys.max() + 1) * scale
        w, h = x1 - x0, y1 - y0
        again = torch.tensor([[x0 - 0.1 * w, y0 - 0.1 * h, x1 + 0.1 * w, y1 + 0.1 * h]]).clamp(0, sam.image_encoder.img_size)
        expected = plain.predict_torch(None, None, again, multimask_output=False, return_logits=True,
                                       hq_token_only=hq_token_only)[2]
        got = pred.predict(**PROMPTS["box"], multimask_output=False, return_logits=True, hq_token_only=hq_token_only)[2]
        assert model.last_refined.tolist() == [True]
        assert np.abs(got - expected.numpy()[0]).max() < 1e-4  # the untrained plugin is HQ-SAM
        assert np.abs(first.numpy()[0] - expected.numpy()[0]).max() > 1e-2  # and the second pass differs
    finally:
        model.remove_hooks()
