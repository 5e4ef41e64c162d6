"""The plugin extensions of the plugin study (amplitudes, offset groups, extra sites, no projection, a narrow
offset net): each keeps the
untrained Stable-SAM exactly SAM, each trains, and plugin files of the previous release load
and give the same logits."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import build_small_sam, perturb_plugins
from stablesam import StableSam, StableSamPredictor
from stablesam.models.files import attach_plugin
from stablesam.modeling import PluginConfig

DATA = Path(__file__).parent / "data"
PAPER = {"projection_rank": 0, "offset_width": 0, "routing_inputs": ()}  # release 0.1's default: the paper's plugin
OPTIONS = {
    "default": PluginConfig(),
    "paper (release 0.1)": PluginConfig(**PAPER),
    "amplitude": PluginConfig(amplitude=True),
    "offset groups 8": PluginConfig(offset_groups=8),
    "layer 1": PluginConfig(extra_sites=("layer1",)),
    "final attention": PluginConfig(extra_sites=("final",)),
    "no projection": PluginConfig(projection=False, offset_width=0),
    "narrow offset net": PluginConfig(projection=False, offset_width=16),
    "low-rank projection": PluginConfig(projection_rank=8, offset_width=16),
    "all at once": PluginConfig(amplitude=True, offset_groups=8, extra_sites=("layer1", "final"), sampled_pe=True,
                                offset_width=32),
}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (120, 180, 3), dtype=np.uint8)


def predictions(model: StableSam, image: np.ndarray, plugins: bool):
    predictor = StableSamPredictor(model)
    predictor.set_image(image)
    model.plugins_enabled = plugins
    out = []
    for multimask in (False, True):
        out.append(predictor.predict_batch(boxes=np.array([[20, 15, 150, 100], [5, 5, 60, 110]]),
                                           multimask_output=multimask, return_logits=True)[2])
        out.append(predictor.predict_batch(point_coords=np.array([[[60.0, 50.0], [100.0, 70.0]]]),
                                           point_labels=np.array([[1, 0]]), boxes=np.array([[20, 15, 150, 100]]),
                                           multimask_output=multimask, return_logits=True)[2])
    return out


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_option_is_sam_at_init_and_moves_once_trained(name, image):
    model = StableSam(build_small_sam(), OPTIONS[name])
    plain = predictions(model, image, plugins=False)
    for a, b in zip(plain, predictions(model, image, plugins=True)):
        assert np.abs(a - b).max() < 1e-4
    perturb_plugins(model, scale=0.3)
    moved = predictions(model, image, plugins=True)
    assert max(np.abs(a - b).max() for a, b in zip(plain, moved)) > 1e-3


def test_options_add_their_parameters_and_train(image):
    def count(**options) -> int:  # plugin parameters of the paper's plugin with `options` changed
        return StableSam(build_small_sam(), PluginConfig(**{**PAPER, **options})).num_plugin_parameters()

    base = count()
    assert base == 81_828 and StableSam(build_small_sam()).num_plugin_parameters() == 50_596
    assert count(amplitude=True) == base + 257
    assert count(offset_groups=8) == base + 7 * 514
    assert count(projection=False) == base - 256 * 257
    # offset net on 16 channels: a 256 -> 16 conv, then DWConv 5x5, LN and the offset conv on 16, not 256
    assert count(offset_width=16) == base + 257 * 16 - (256 - 16) * (26 + 2 + 2)
    assert count(projection_rank=8) == base - 256 * 257 + (257 * 8 + 9 * 256)
    two = StableSam(build_small_sam(), PluginConfig(extra_sites=("layer1", "final")))
    assert two.num_plugin_parameters() == 3 * 50_596
    assert set(two.plugin_modules()) == {"dsp", "drp", "dsp_layer1", "drp_layer1", "dsp_final", "drp_final"}
    model = StableSam(build_small_sam(), OPTIONS["all at once"])
    perturb_plugins(model, scale=0.1)
    sam = model.sam
    emb = sam.image_encoder(sam.preprocess(torch.zeros(1, 3, 256, 256)))
    logits, _ = model.decode(emb.detach(), boxes=torch.tensor([[20.0, 15.0, 150.0, 100.0]]))
    logits.sum().backward()
    for name, module in model.plugin_modules().items():
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), name
    assert all(p.grad is None for p in sam.parameters())


def test_bad_option_values_are_refused():
    with pytest.raises(ValueError, match="extra_sites"):
        PluginConfig(extra_sites=("layer3",))
    with pytest.raises(ValueError, match="offset_groups"):
        PluginConfig(offset_groups=3)
    with pytest.raises(ValueError, match="projection_rank"):
        PluginConfig(projection_rank=-2)
    with pytest.raises(ValueError, match="offset_width"):
        PluginConfig(offset_width=-1)
    with pytest.raises(ValueError, match="routing_hidden"):
        PluginConfig(routing_hidden=0)
    assert PluginConfig.from_dict(PluginConfig(extra_sites=("final",)).to_dict()).extra_sites == ("final",)
    # JSON a user writes means today's defaults; a saved file that lacks an option means the paper's
    assert PluginConfig.from_dict({}) == PluginConfig()
    assert PluginConfig.from_saved({}) == PluginConfig(**PAPER)
    assert PluginConfig.from_saved(PluginConfig().to_dict()) == PluginConfig()


def test_plugin_files_of_the_previous_release_load_and_give_the_same_logits(image):
    """tests/data/plugin_release_0_1.pt and its logits were written by the code before these options."""
    model = attach_plugin(build_small_sam(), DATA / "plugin_release_0_1.pt")
    assert model.config == PluginConfig(**PAPER)  # the file predates the options: it reads as the paper's plugin
    reference = np.load(DATA / "plugin_release_0_1_logits.npz")
    predictor = StableSamPredictor(model)
    predictor.set_image(image)
    _, scores, box = predictor.predict_batch(boxes=np.array([[20, 15, 150, 100], [5, 5, 60, 110]]), return_logits=True)
    assert np.abs(box - reference["box"]).max() < 1e-4 and np.allclose(scores, reference["box_scores"], atol=1e-5)
    _, scores, pts = predictor.predict_batch(point_coords=np.array([[[60.0, 50.0], [100.0, 70.0]]]),
                                             point_labels=np.array([[1, 0]]), multimask_output=True)
    assert np.abs(pts - reference["points"]).max() < 1e-4
    assert np.allclose(predictor.routing["alpha"], reference["alpha"], atol=1e-5)


@pytest.mark.parametrize("name", ["no projection", "narrow offset net", "low-rank projection", "all at once"])
def test_option_plugin_files_round_trip(name, image, tmp_path):
    """A plugin file records its options: loading it rebuilds the same plugins, same logits."""
    from stablesam import save_plugin

    torch.manual_seed(0)
    sam = build_small_sam()
    model = StableSam(sam, OPTIONS[name])
    perturb_plugins(model, scale=0.3)
    save_plugin(model, tmp_path / "p.pt", base_name="small")
    loaded = attach_plugin(sam, tmp_path / "p.pt", force=True)
    assert loaded.config == OPTIONS[name]
    for a, b in zip(predictions(model, image, plugins=True), predictions(loaded, image, plugins=True)):
        assert np.abs(a - b).max() < 1e-6
