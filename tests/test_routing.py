"""Routing that can see prompt quality: DRP inputs beyond t_o, a temperature on α, and the loss
terms of `stablesam.training.routing_terms` (consistency with the frozen base on good prompts, a prior on
α, offset regularisation). Every option keeps the untrained plugin exactly SAM."""

import json

import numpy as np
import pytest
import torch

from conftest import SMALL_ARCH, build_small_sam, perturb_plugins
from stablesam import StableSam, StableSamPredictor, save_plugin
from stablesam.models.files import attach_plugin, read_plugin, save_sam_file
from stablesam.backends.official import read_weights
from stablesam.cli import main
from stablesam.modeling import PluginConfig
from stablesam.prompts.generation import Prompts, mask_to_box, noisy_boxes, sample_points
from stablesam.training.routing_terms import (OFF, RoutingTerms, box_noise_scale, consistency_loss, is_far, is_near_gt, offset_penalty,
                                     plugins_off)
from stablesam.training.objects import TrainObject
from stablesam.training.loop import TrainStep
from stablesam.training.record import with_defaults
from helpers import make_folder

OPTIONS = {
    "prompt tokens": PluginConfig(routing_inputs=("prompt",)),
    "iou token": PluginConfig(routing_inputs=("iou",)),
    "box fit": PluginConfig(routing_inputs=("fit",)),
    "box fit, closing gate": PluginConfig(routing_inputs=("fit",), fit_gate="close"),
    "temperature": PluginConfig(routing_temperature=0.25),
    "all, every site": PluginConfig(routing_inputs=("prompt", "iou"), routing_temperature=0.5,
                                    extra_sites=("layer1", "final")),
}
IMAGE = np.random.default_rng(0).integers(0, 255, (120, 180, 3), dtype=np.uint8)


def logits_of(model: StableSam, plugins: bool) -> list:
    predictor = StableSamPredictor(model)
    predictor.set_image(IMAGE)
    model.plugins_enabled = plugins
    out = []
    for multimask in (False, True):
        out.append(predictor.predict_batch(boxes=np.array([[20, 15, 150, 100], [5, 5, 60, 110]]),
                                           multimask_output=multimask, return_logits=True)[2])
        out.append(predictor.predict(point_coords=np.array([[60.0, 50.0]]), point_labels=np.array([1]),
                                     multimask_output=multimask, return_logits=True)[2])
    model.plugins_enabled = True
    return out


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_routing_option_is_sam_at_init_and_round_trips(name, tmp_path):
    sam = build_small_sam()
    model = StableSam(sam, OPTIONS[name])
    plain = logits_of(model, plugins=False)
    for a, b in zip(plain, logits_of(model, plugins=True)):
        assert np.abs(a - b).max() < 1e-4
    perturb_plugins(model, scale=0.3)
    moved = logits_of(model, plugins=True)
    assert max(np.abs(a - b).max() for a, b in zip(plain, moved)) > 1e-3
    save_plugin(model, tmp_path / "p.pt", base_name="small")
    assert read_weights(tmp_path / "p.pt")["config"]["routing_inputs"] == list(OPTIONS[name].routing_inputs)
    loaded = attach_plugin(sam, tmp_path / "p.pt", force=True)
    assert loaded.config == OPTIONS[name]
    for a, b in zip(moved, logits_of(loaded, plugins=True)):
        assert np.abs(a - b).max() < 1e-6


def test_routing_inputs_widen_the_drp_and_see_the_prompt():
    base = StableSam(build_small_sam(), PluginConfig(routing_inputs=())).num_plugin_parameters()
    model = StableSam(build_small_sam(), PluginConfig(routing_inputs=("prompt", "iou")))
    assert model.num_plugin_parameters() == base + 2 * 256 * 32
    assert model._prompt_start == 5  # SAM 1: IoU token + 4 mask tokens, then the prompt's tokens
    # the pooled prompt tokens are what follows the output tokens: the prompt part of the input
    tokens = torch.randn(3, 7, 256)
    routed = model._routing_token(tokens)
    assert routed.shape == (3, 3 * 256)
    assert torch.equal(routed[:, 256:512], tokens[:, 5:].mean(dim=1)) and torch.equal(routed[:, 512:], tokens[:, 0])
    assert torch.equal(model._routing_token(tokens[:, :5])[:, 256:512], torch.zeros(3, 256))  # no prompt token


def test_old_plugin_files_keep_their_routing():
    """A file written before these options existed reads them as the plain routing (what it was)."""
    assert PluginConfig.from_saved({}).routing_inputs == () and PluginConfig.from_saved({}).routing_temperature == 1.0
    old = PluginConfig().to_dict()
    del old["routing_inputs"], old["routing_temperature"]
    assert PluginConfig.from_saved(old) == PluginConfig(routing_inputs=())
    assert PluginConfig().routing_inputs == ("prompt", "iou")  # today's default is not what absence means
    fit = PluginConfig(routing_inputs=("fit",)).to_dict()
    del fit["fit_gate"]  # written before the closing gate existed: the two-sided gate
    assert PluginConfig.from_saved(fit).fit_gate == "both"


def test_bad_routing_options_are_refused():
    with pytest.raises(ValueError, match="routing_inputs"):
        PluginConfig(routing_inputs=("entropy",))
    # t_o is always read: naming it as an input too adds nothing (the default inputs with --routing-token iou)
    assert PluginConfig(routing_token="iou").routing_inputs == ("prompt",)
    with pytest.raises(ValueError, match="routing_temperature"):
        PluginConfig(routing_temperature=0.0)
    with pytest.raises(ValueError, match="fit_gate"):
        PluginConfig(routing_inputs=("fit",), fit_gate="open")
    with pytest.raises(ValueError, match="routing terms"):
        RoutingTerms(consistency=-1.0)


def test_near_gt_is_the_noisy_box_scale():
    mask = np.zeros((80, 120), bool)
    mask[20:60, 30:90] = True
    gt = mask_to_box(mask)
    rng = np.random.default_rng(0)
    assert box_noise_scale(gt, gt) == 0.0
    for scale in (0.05, 0.1, 0.3):
        boxes = noisy_boxes(gt, scale, 50, rng, mask.shape)
        assert all(box_noise_scale(b, gt) <= scale + 1e-9 for b in boxes)
    assert is_near_gt(Prompts(boxes=gt[None]), gt, 0.0)
    assert is_near_gt(Prompts(boxes=noisy_boxes(gt, 0.1, 1, rng, mask.shape)), gt, 0.1)
    far = np.array([gt[0] - 20, gt[1], gt[2], gt[3]])
    assert not is_near_gt(Prompts(boxes=far[None]), gt, 0.1)
    clicks = sample_points(mask, 1, 1, rng)
    assert not is_near_gt(Prompts(point_coords=clicks, point_labels=np.ones((1, 1), int)), gt, 1.0)
    assert not is_near_gt(Prompts(boxes=gt[None], point_coords=clicks, point_labels=np.ones((1, 1), int)), gt, 1.0)
    # far: loose boxes and clicks alone; never a box with clicks, never a near box
    assert is_far(Prompts(boxes=far[None]), gt, 0.25) and not is_far(Prompts(boxes=gt[None]), gt, 0.25)
    assert not is_far(Prompts(boxes=noisy_boxes(gt, 0.2, 1, rng, mask.shape)), gt, 0.25)
    assert is_far(Prompts(point_coords=clicks, point_labels=np.ones((1, 1), int)), gt, 0.25)
    assert not is_far(Prompts(boxes=far[None], point_coords=clicks, point_labels=np.ones((1, 1), int)), gt, 0.25)


def test_alpha_far_pushes_the_deformed_weight_up_on_far_prompts_only():
    torch.manual_seed(0)
    model = StableSam(build_small_sam())
    obj = make_object(model)
    loose = Prompts(boxes=np.array([[0.0, 0.0, 179.0, 119.0]]))  # the whole image around a 60 x 80 object
    gt = Prompts(boxes=mask_to_box(obj.mask())[None])
    plain, pushed = TrainStep(model, 1.0, OFF), TrainStep(model, 1.0, RoutingTerms(consistency=0.0, alpha_prior=0.0,
                                                                                   alpha_far=1.0))
    assert abs(pushed([(obj, gt, None)]).item() - plain([(obj, gt, None)]).item()) < 1e-6  # not far: no term
    extra = pushed([(obj, loose, None)]).item() - plain([(obj, loose, None)]).item()
    assert abs(extra - 0.5) < 1e-5  # α = (0.5, 0.5) at init: the term is alpha_far * α2
    opt = torch.optim.SGD(model.plugin_parameters(), lr=1.0)
    for _ in range(5):
        opt.zero_grad()
        pushed([(obj, loose, None)]).backward()
        opt.step()
    model.decode(obj.embedding, boxes=torch.tensor([[0.0, 0.0, 255.0, 170.0]]))
    assert model.routing_graph["layer2"][0][:, 0].mean() > 0.6  # α1 (deformed) rose from 0.5


def test_consistency_and_offset_terms_zero_at_identity_positive_when_perturbed():
    torch.manual_seed(0)
    model = StableSam(build_small_sam())
    sam = model.sam
    with torch.no_grad():
        emb = sam.image_encoder(sam.preprocess(torch.rand(1, 3, 256, 256) * 255))
    boxes = torch.tensor([[40.0, 30.0, 200.0, 180.0]])

    def base():
        with plugins_off(model), torch.no_grad():
            return model.decode(emb, boxes=boxes)[0]

    logits, _ = model.decode(emb, boxes=boxes)
    at_init = consistency_loss(logits, base()).item()
    assert at_init < 1e-10
    assert offset_penalty(model.routing_graph["layer2"][1], 4.0) == 0
    perturb_plugins(model, scale=0.2)
    logits, _ = model.decode(emb, boxes=boxes)
    assert consistency_loss(logits, base()) > max(1e-6, 1e4 * at_init)  # random-init logits are small
    assert offset_penalty(model.routing_graph["layer2"][1], 4.0) > 1e-4
    terms = RoutingTerms(consistency=1.0, alpha_prior=1.0, offset_reg=1.0)
    total = terms.loss(model, logits, True, base)
    total.backward()
    assert total > 0 and all(p.grad is not None for p in model.plugin_parameters())
    assert RoutingTerms(consistency=1.0).loss(model, logits, False, base) == 0  # not a near-gt prompt
    valid = torch.zeros_like(logits)
    assert consistency_loss(logits, base(), valid) == 0  # every pixel ignored


def make_object(model: StableSam) -> TrainObject:
    sam = model.sam
    mask = np.zeros((120, 180), bool)
    mask[30:90, 50:130] = True
    with torch.no_grad():
        emb = sam.image_encoder(sam.preprocess(torch.rand(1, 3, 256, 256) * 255))
    return TrainObject("toy/a", emb, model.backend.low_res_target(mask, sam), np.packbits(mask.ravel()), mask.shape)


def test_train_step_adds_the_terms_only_where_they_apply():
    torch.manual_seed(0)
    model = StableSam(build_small_sam())
    obj = make_object(model)
    gt = Prompts(boxes=mask_to_box(obj.mask())[None])
    far = Prompts(boxes=np.array([[0.0, 0.0, 179.0, 119.0]]))
    plain = TrainStep(model, 1.0)
    terms = TrainStep(model, 1.0, RoutingTerms(consistency=10.0, offset_reg=10.0))

    def loss(step, prompts):
        return step([(obj, prompts, None)]).item()

    for prompts in (gt, far):  # identity plugins: the terms add nothing
        assert abs(loss(terms, prompts) - loss(plain, prompts)) < 1e-5
    perturb_plugins(model, scale=0.2)
    for prompts in (gt, far):
        assert loss(terms, prompts) > loss(plain, prompts) + 1e-4
    consistency_only = TrainStep(model, 1.0, RoutingTerms(consistency=10.0))
    assert abs(loss(consistency_only, far) - loss(plain, far)) < 1e-6  # not near-gt: no consistency term
    assert loss(consistency_only, gt) > loss(plain, gt)


def test_training_checkpoints_written_before_these_options_resume(tmp_path, capsys):
    assert with_defaults({"model": "x"})["terms"] == OFF.to_dict()  # trained without the terms
    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    out = tmp_path / "run"
    args = ["train", "--data", str(make_folder(tmp_path / "toy", n=4)), "--model", f"sam:{sam_file}", "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--steps", "4", "--batch-size", "2", "--checkpoint-every", "2",
            "--routing-inputs", "none", "--consistency", "0", "--alpha-prior", "0"]  # what training was then
    assert main(args) == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["step"], ckpt["log"] = 2, ckpt["log"][:2]
    plugin = ckpt["config"]["plugin"]
    del ckpt["config"]["terms"], plugin["routing_inputs"], plugin["routing_temperature"]
    torch.save(ckpt, out / "checkpoint.pt")
    assert main([*args, "--resume", "--consistency", "1"]) == 2  # a checkpoint without terms trained without them
    assert "differs in: terms" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def test_train_cli_options_train_save_and_report_alpha(tmp_path, capsys):
    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    data = make_folder(tmp_path / "toy", n=4)
    out = tmp_path / "run"
    common = ["--data", str(data), "--model", f"sam:{sam_file}", "--cache", str(tmp_path / "cache")]
    assert main(["train", *common, "--out", str(out), "--steps", "3", "--batch-size", "2",
                 "--rts-mixture", "gt-box=1,noisy-box=1", "--routing-inputs", "prompt,iou",
                 "--routing-temperature", "0.5", "--consistency", "1", "--alpha-prior", "0.1",
                 "--offset-reg", "0.1", "--near-gt", "0.2"]) == 0
    config = read_plugin(out / "plugin.pt")["config"]
    assert config.routing_inputs == ("prompt", "iou") and config.routing_temperature == 0.5
    saved = json.loads((out / "config.json").read_text())
    assert saved["terms"] == {"consistency": 1.0, "alpha_prior": 0.1, "offset_reg": 0.1, "near_gt": 0.2,
                              "alpha_far": 0.0, "far": 0.25}
    # resuming with other terms is another run
    assert main(["train", *common, "--out", str(out), "--steps", "4", "--batch-size", "2",
                 "--rts-mixture", "gt-box=1,noisy-box=1", "--routing-inputs", "prompt,iou",
                 "--routing-temperature", "0.5", "--consistency", "2", "--resume"]) == 2
    assert "terms" in capsys.readouterr().err
    assert main(["eval", *common[:2], "--model", f"sam:{sam_file}+plugin={out / 'plugin.pt'}", "--samples", "2",
                 "--prompts", "gt-box,points@1", "--out", str(tmp_path / "eval"),
                 "--cache", str(tmp_path / "cache")]) == 0
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())["rows"]
    assert {r["prompt"] for r in rows if "alpha1" in r} == {"gt-box", "points@1"}
    assert main(["train", *common, "--out", str(tmp_path / "dt"), "--steps", "1", "--tune", "decoder",
                 "--consistency", "1"]) == 2
    assert "--tune plugins" in capsys.readouterr().err
