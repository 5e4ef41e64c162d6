"""Hugging Face transformers: a SamModel (a small random-init ViT encoder, SAM's standard 256-d
decoder) and a Sam2Model (transformers' default Sam2Config: SAM 2.1 hiera-tiny), saved with
save_pretrained and loaded from the folder, with Stable-SAM's plugins in their decoders."""

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="Hugging Face tests need the [hf] extra (transformers)")

from conftest import build_small_sam, perturb_plugins
from helpers import (PROMPTS, PlainHf, assert_batch_equals_singles, assert_identity,
                     assert_one_step_trains_only_plugins)
from stablesam import CheckpointError, StableSam, StableSamPredictor, save_plugin
from stablesam.backends import Embedding, get_backend
from stablesam.models.files import attach_plugin
from helpers import small_sam_config, torch_default_init

IMAGE = np.random.default_rng(0).integers(0, 255, size=(120, 180, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=["sam", "sam2"])
def hf(request, tmp_path_factory):
    """(folder, model loaded from it, its Embedding of IMAGE)."""
    from transformers import Sam2Config, Sam2Model, SamModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(f"hf_{request.param}")
    model = SamModel(small_sam_config()) if request.param == "sam" else Sam2Model(Sam2Config())
    torch_default_init(model)
    model.save_pretrained(folder)
    loaded = get_backend("hf").load("hf", folder, torch.device("cpu"))
    if request.param == "sam":
        emb = get_backend("hf").encode(loaded, IMAGE)
    else:  # hiera-tiny at 1024 px is slow on a CPU: random features of the right shapes
        g = torch.Generator().manual_seed(0)
        emb = Embedding(torch.randn(1, 256, 64, 64, generator=g), (1024, 1024), IMAGE.shape[:2],
                        {"high_res_feats": [torch.randn(1, 32, 256, 256, generator=g),
                                            torch.randn(1, 64, 128, 128, generator=g)]})
    return folder, loaded, emb


@pytest.fixture
def stable(hf):
    model = StableSam(hf[1])
    pred = StableSamPredictor(model)
    pred.set_embedding(hf[2])
    yield model, pred
    model.remove_hooks()


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_untrained_stable_hf_is_hf(hf, stable, prompt, multimask):
    model, pred = stable
    assert model.family == "hf" and type(pred).__name__ == "StableHfPredictor"
    assert_identity(model, pred, PlainHf(hf[1], hf[2]), prompt, multimask)


def test_predictor_masks_at_image_size(hf, stable):
    masks, scores, low = stable[1].predict(**PROMPTS["box"], multimask_output=True)
    assert masks.shape == (3, *IMAGE.shape[:2]) and masks.dtype == bool
    assert scores.shape == (3,) and low.shape[-2:] == get_backend("hf").mask_input_size(hf[1])


def test_plugin_count_same_as_sam1(stable):
    assert stable[0].num_plugin_parameters() == StableSam(build_small_sam()).num_plugin_parameters()


def test_batch_equals_single_calls(stable):
    assert_batch_equals_singles(*stable)


def test_one_step_changes_only_plugins(hf, stable):
    assert_one_step_trains_only_plugins(stable[0], hf[2], torch.tensor([[20.0, 30.0, 200.0, 180.0]]))


def test_folders_and_plugin_family(hf, stable, tmp_path):
    folder, model_hf, _ = hf
    backend = get_backend("hf")
    with pytest.raises(CheckpointError, match="not a transformers model folder"):
        backend.load("hf", tmp_path, torch.device("cpu"))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="'bert' model, not SamModel, Sam2Model or Sam3TrackerModel"):
        backend.load("hf", tmp_path, torch.device("cpu"))
    model = stable[0]
    perturb_plugins(model)
    plugin = tmp_path / "plugin.pt"
    save_plugin(model, plugin, base_name=f"hf:{folder.name}")
    assert torch.load(plugin, weights_only=True)["base"]["family"] == "hf"
    again = attach_plugin(model_hf, plugin)
    assert all(torch.equal(v, again.plugin_state_dict()[k]) for k, v in model.plugin_state_dict().items())
    again.remove_hooks()
    with pytest.raises(CheckpointError, match="trained for a Hugging Face transformers SAM model.*not SAM 1"):
        attach_plugin(build_small_sam(), plugin, force=True)


def test_encode_gives_what_the_decoder_reads(hf):
    """The transformers processor + get_image_embeddings path (one hiera-tiny run for Sam2Model)."""
    _, model, emb = hf
    model_stable = StableSam(model)
    pred = StableSamPredictor(model_stable)
    pred.set_image(IMAGE)
    assert pred.features.shape == emb.features.shape
    assert [t.shape for t in pred.extras.get("high_res_feats", [])] == [t.shape for t in emb.extras.get("high_res_feats", [])]
    assert pred.original_size == IMAGE.shape[:2]
    masks, _, _ = pred.predict(**PROMPTS["box+points"], multimask_output=False)
    assert masks.shape == (1, *IMAGE.shape[:2])
    model_stable.remove_hooks()
