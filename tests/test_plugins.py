import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry
from torch.nn import functional as F

from conftest import perturb_plugins
from stablesam import PluginConfig, StableSam, StableSamPredictor
from stablesam.modeling import DeformableSamplingPlugin

from helpers import PROMPTS  # noqa: E402  (the prompts every family's identity test uses)


CONFIGS = {
    "default": PluginConfig(),
    "sampled-pe": PluginConfig(sampled_pe=True),
    "iou-token": PluginConfig(routing_token="iou", offset_range=8.0),
    "mean-token": PluginConfig(routing_token="mean"),
    "no-drp": PluginConfig(use_routing=False),
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_untrained_stable_sam_reproduces_sam(small_sam, image, prompt, multimask, config):
    sam_pred = SamPredictor(small_sam)
    sam_pred.set_image(image)
    ref_masks, _, ref_low = sam_pred.predict(**PROMPTS[prompt], multimask_output=multimask, return_logits=True)

    model = StableSam(small_sam, CONFIGS[config])
    pred = StableSamPredictor(model)
    pred.set_image(image)
    masks, _, low = pred.predict(**PROMPTS[prompt], multimask_output=multimask, return_logits=True)
    assert model.last_alpha is not None, "the plugins did not run"
    assert np.abs(low - ref_low).max() < 1e-4
    assert np.abs(masks - ref_masks).max() < 1e-4

    perturb_plugins(model)  # trained plugins must change the output: the check above can fail
    _, _, moved = pred.predict(**PROMPTS[prompt], multimask_output=multimask, return_logits=True)
    assert np.abs(moved - ref_low).max() > 1e-2


def test_wrapping_leaves_plain_sam_predictor_alone(small_sam, image):
    plain = SamPredictor(small_sam)
    plain.set_image(image)
    before = plain.predict(**PROMPTS["box"], multimask_output=True, return_logits=True)[2]
    model = StableSam(small_sam)
    perturb_plugins(model)
    after = plain.predict(**PROMPTS["box"], multimask_output=True, return_logits=True)[2]
    assert np.array_equal(before, after)
    # and the same object serves as plain SAM with plugins_enabled = False
    pred = StableSamPredictor(model)
    pred.set_image(image)
    model.plugins_enabled = False
    off = pred.predict(**PROMPTS["box"], multimask_output=True, return_logits=True)[2]
    assert np.array_equal(before, off)
    model.plugins_enabled = True
    on = pred.predict(**PROMPTS["box"], multimask_output=True, return_logits=True)[2]
    assert not np.allclose(before, on, atol=1e-3)


def test_plugin_parameter_count_vit_b():
    sam = sam_model_registry["vit_b"]()
    model = StableSam(sam)
    # rank-32 projection, 32-channel offset net, a DRP that also reads the prompt and IoU tokens (2 x 256 x 32)
    assert model.num_plugin_parameters() == 50_596
    paper = StableSam(sam_model_registry["vit_b"](), PluginConfig(projection_rank=0, offset_width=0, routing_inputs=()))
    assert paper.num_plugin_parameters() == 81_828  # the paper's plugin, "about 0.08 M"
    assert all(p.requires_grad for p in model.plugin_parameters())
    assert not any(p.requires_grad for p in sam.parameters())


def _loss_step(model, optimizer):
    emb = torch.randn(1, 256, 16, 16, generator=torch.Generator().manual_seed(3))
    boxes = torch.tensor([[20.0, 30.0, 200.0, 180.0], [60.0, 10.0, 120.0, 250.0]])
    low, _ = model.decode(emb, boxes=boxes)
    target = torch.zeros_like(low)
    target[..., 10:40, 10:50] = 1
    loss = F.binary_cross_entropy_with_logits(low, target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_one_step_changes_only_plugin_weights(small_sam):
    sam_before = {k: v.clone() for k, v in small_sam.state_dict().items()}
    model = StableSam(small_sam)
    plugin_before = model.plugin_state_dict()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    _loss_step(model, opt)
    for k, v in small_sam.state_dict().items():
        assert torch.equal(v, sam_before[k]), k
    after = model.plugin_state_dict()
    assert any(not torch.equal(after[k], plugin_before[k]) for k in after)


def test_gradients_reach_every_plugin_weight(small_sam):
    # At init the offset conv is zero and α's softmax sees identical branches, so the DW conv,
    # its LayerNorm and the routing MLP get their first gradient on the second step.
    model = StableSam(small_sam)
    init = model.plugin_state_dict()
    opt = torch.optim.Adam(list(model.plugin_parameters()), lr=1e-3)
    for _ in range(3):
        _loss_step(model, opt)
    after = model.plugin_state_dict()
    frozen = [k for k in after if torch.equal(after[k], init[k])]
    assert frozen == []


def _feature_map(h, w, c=3):
    """(1, h*w, c) tokens whose value encodes the cell: channel0 = x, channel1 = y."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs, ys, xs * 10 + ys], dim=-1)[..., :c]
    return grid.reshape(1, h * w, c)


@pytest.mark.parametrize("h,w", [(64, 64), (32, 32), (16, 8)])
def test_zero_offsets_reproduce_regular_grid(h, w):
    dsp = DeformableSamplingPlugin(embed_dim=3, kernel_size=3)
    x = _feature_map(h, w)
    out = dsp.sample(x, torch.zeros(1, h, w, 2), h, w)
    assert torch.equal(out, x)  # exact: cell centres land on the cells


@pytest.mark.parametrize("h,w", [(32, 32), (20, 12)])
def test_constant_offset_shifts_features(h, w):
    dsp = DeformableSamplingPlugin(embed_dim=3, kernel_size=3)
    x = _feature_map(h, w)
    off = torch.zeros(1, h, w, 2)
    off[..., 0] = 2.0  # read 2 cells to the right
    off[..., 1] = -1.0  # and 1 cell up
    out = dsp.sample(x, off, h, w).reshape(h, w, 3)
    ref = x.reshape(h, w, 3)
    assert torch.allclose(out[1:, : w - 2], ref[:-1, 2:], atol=1e-4)
    # half a cell right: the mean of two neighbours (bilinear)
    off = torch.zeros(1, h, w, 2)
    off[..., 0] = 0.5
    out = dsp.sample(x, off, h, w).reshape(h, w, 3)
    assert torch.allclose(out[:, : w - 1, 0], ref[:, : w - 1, 0] + 0.5, atol=1e-4)
    # border padding: reading past the edge repeats the last column
    assert torch.allclose(out[:, -1, 0], ref[:, -1, 0], atol=1e-4)


def test_offsets_are_bounded():
    torch.manual_seed(0)
    dsp = DeformableSamplingPlugin(embed_dim=8, kernel_size=5, offset_range=3.0)
    with torch.no_grad():
        dsp.offset.weight.normal_(0, 100.0)
    off = dsp.compute_offsets(torch.randn(2, 16 * 16, 8), 16, 16)
    assert off.shape == (2, 16, 16, 2)
    assert off.abs().max() <= 3.0 and off.abs().max() > 2.5


def test_config_validation():
    with pytest.raises(ValueError, match="routing_token"):
        PluginConfig(routing_token="cls")
    with pytest.raises(ValueError, match="offset_range"):
        PluginConfig(offset_range=0)
    with pytest.raises(TypeError, match="Sam"):
        StableSam(torch.nn.Linear(2, 2))


def test_sampler_matches_grid_sample_border():
    """The token-layout sampler computes grid_sample(bilinear, border, align_corners=False)."""
    torch.manual_seed(0)
    b, h, w, c = 2, 12, 20, 5
    dsp = DeformableSamplingPlugin(embed_dim=c, kernel_size=3)
    x = torch.randn(b, h * w, c, requires_grad=True)
    off = (torch.randn(b, h, w, 2) * 3).requires_grad_()
    ours = dsp.sample(x, off, h, w)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    norm = torch.stack(((xs * 2 + 1) / w - 1, (ys * 2 + 1) / h - 1), -1).float()
    grid = norm + off * torch.tensor([2.0 / w, 2.0 / h])
    ref = F.grid_sample(x.view(b, h, w, c).permute(0, 3, 1, 2), grid, mode="bilinear",
                        padding_mode="border", align_corners=False).flatten(2).transpose(1, 2)
    assert torch.allclose(ours, ref, atol=1e-5)
    g_ours = torch.autograd.grad(ours.square().sum(), (x, off))
    g_ref = torch.autograd.grad(ref.square().sum(), (x, off))
    for a, r in zip(g_ours, g_ref):
        assert torch.allclose(a, r, atol=1e-3, rtol=1e-4)
