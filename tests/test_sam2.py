"""SAM 2.1 (sam2): a random-init sam2.1_hiera_t from the package's own config (at 512 px, the
test's only change, so the CPU encoder is fast), saved as an official {"model": state_dict}
checkpoint, with Stable-SAM's plugins in its decoder."""

import numpy as np
import pytest
import torch

pytest.importorskip("sam2", reason="SAM 2 tests need the [sam2] extra (sam2)")

from conftest import build_small_sam, perturb_plugins
from helpers import PROMPTS, assert_batch_equals_singles, assert_identity, assert_one_step_trains_only_plugins
from stablesam import CheckpointError, StableSam, StableSamPredictor, save_plugin
from stablesam.backends import Embedding, get_backend
from stablesam.backends.sam2.predictor import plain_predictor
from stablesam.models.files import attach_plugin
from stablesam.backends.official import load_family_weights

IMAGE = np.random.default_rng(0).integers(0, 255, size=(120, 180, 3), dtype=np.uint8)
SIZE = 512


@pytest.fixture(scope="module")
def sam2(tmp_path_factory):
    """(official checkpoint path, model loaded from it, SAM 2's own predictor with the image set)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": get_backend("sam2").build("sam2.1_hiera_t", SIZE).state_dict()}, path)
    sam = load_family_weights(get_backend("sam2").build("sam2.1_hiera_t", SIZE), path, "sam2", "sam2.1_hiera_t")
    plain = plain_predictor(sam)
    plain.set_image(IMAGE)  # the only encoder run of this module
    return path, sam, plain


def embedding_of(plain) -> Embedding:
    f = plain._features
    return Embedding(f["image_embed"], (SIZE, SIZE), plain._orig_hw[-1], {"high_res_feats": list(f["high_res_feats"])})


@pytest.fixture
def stable(sam2):
    model = StableSam(sam2[1])
    pred = StableSamPredictor(model)
    pred.set_embedding(embedding_of(sam2[2]))
    yield model, pred
    model.remove_hooks()


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_untrained_stable_sam2_is_sam2(sam2, stable, prompt, multimask):
    model, pred = stable
    assert model.family == "sam2" and type(pred).__name__ == "StableSam2Predictor"
    assert model.backend.token_positions(model.sam)[1] == 2  # object-score token first
    assert_identity(model, pred, sam2[2], prompt, multimask)


def test_encode_matches_sam2_predictor(sam2):
    emb = get_backend("sam2").encode(sam2[1], IMAGE)
    ref = embedding_of(sam2[2])
    assert torch.equal(emb.features, ref.features)
    assert all(torch.equal(a, b) for a, b in zip(emb.extras["high_res_feats"], ref.extras["high_res_feats"]))


def test_plugin_count_same_as_sam1(stable):
    assert stable[0].num_plugin_parameters() == StableSam(build_small_sam()).num_plugin_parameters()


def test_batch_equals_single_calls(stable):
    assert_batch_equals_singles(*stable)


def test_one_step_changes_only_plugins(sam2, stable):
    assert_one_step_trains_only_plugins(stable[0], embedding_of(sam2[2]), torch.tensor([[20.0, 30.0, 300.0, 250.0]]))


def test_checkpoints_and_plugin_family(sam2, stable, tmp_path):
    path, sam, _ = sam2
    backend = get_backend("sam2")
    loaded = backend.load("sam2.1_hiera_t", path, torch.device("cpu"))  # the config's own 1024 px
    assert loaded.image_size == 1024
    assert all(torch.equal(v, sam.state_dict()[k]) for k, v in loaded.state_dict().items())
    sam1 = tmp_path / "sam_vit_b.pth"
    torch.save(build_small_sam().state_dict(), sam1)
    with pytest.raises(CheckpointError, match="this is a SAM 1 checkpoint, not SAM 2.1"):
        backend.load("sam2.1_hiera_t", sam1, torch.device("cpu"))
    with pytest.raises(CheckpointError, match="does not fit a sam2.1_hiera_s"):
        backend.load("sam2.1_hiera_s", path, torch.device("cpu"))
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        backend.load("sam2.1_hiera_t", truncated, torch.device("cpu"))
    from stablesam import load_model

    with pytest.raises(CheckpointError, match="this is a SAM 2.1 checkpoint, not SAM 1"):
        load_model(path, "vit_b", device="cpu")
    plain = load_model(path, "sam2.1_hiera_t", device="cpu")
    assert plain.family == "sam2" and not plain.plugins_enabled
    model = stable[0]
    perturb_plugins(model)
    plugin = tmp_path / "plugin.pt"
    save_plugin(model, plugin, base_name="sam2.1_hiera_t:sam2.1_hiera_tiny.pt")
    assert torch.load(plugin, weights_only=True)["base"]["family"] == "sam2"
    again = attach_plugin(sam, plugin)
    assert all(torch.equal(v, again.plugin_state_dict()[k]) for k, v in model.plugin_state_dict().items())
    again.remove_hooks()
    with pytest.raises(CheckpointError, match="trained for a SAM 2.1 model.*not SAM 1"):
        attach_plugin(build_small_sam(), plugin, force=True)
