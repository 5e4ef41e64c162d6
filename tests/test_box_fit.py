"""The routing input "fit": how tightly a box prompt fits the frozen SAM's mask, read through a
gate on α. SAM at init, measured on the base's own mask, refused where it cannot be measured."""

import numpy as np
import pytest
import torch

from conftest import build_small_sam
from stablesam import StableSam, StableSamPredictor
from stablesam.backends.sam1 import Sam1Backend
from stablesam.modeling import PluginConfig
from stablesam.modeling.box_fit import FitGate, box_fit

FIT = PluginConfig(routing_inputs=("prompt", "iou", "fit"))
IMAGE = np.random.default_rng(0).integers(0, 255, (120, 180, 3), dtype=np.uint8)


def test_box_fit_is_the_iou_of_the_box_with_the_masks_bounding_box():
    masks = torch.zeros(4, 50, 60, dtype=torch.bool)
    masks[:, 10:30, 20:40] = True  # bounding box x 20..40, y 10..30 (400 px)
    masks[3] = False
    boxes = torch.tensor([[20.0, 10.0, 40.0, 30.0],   # tight
                          [10.0, 10.0, 40.0, 30.0],   # 10 px loose on the left: 400 / 600
                          [30.0, 10.0, 40.0, 30.0],   # cuts the left half: 200 / 400
                          [20.0, 10.0, 40.0, 30.0]])  # empty mask
    fit = box_fit(masks, boxes)
    assert torch.allclose(fit, torch.tensor([1.0, 400 / 600, 0.5, 0.0]))


def test_the_closing_gate_only_closes_the_dsp_for_boxes_tighter_than_its_centre():
    fit = torch.tensor([0.2, 0.6, 0.75, 0.8, 0.95, 0.95])
    has_box = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    close, both = FitGate("close")(fit, has_box), FitGate("both")(fit, has_box)
    assert torch.equal(close[:, 1], torch.zeros(6)) and torch.equal(both[:, 1], torch.zeros(6))
    assert torch.allclose(close[:, 0], torch.tensor([0.0, 0.0, 0.0, -16 * 0.05, -16 * 0.2, 0.0]))
    assert torch.allclose(both[:, 0], 8 * (0.75 - fit) * has_box)  # loose boxes open the DSP too
    with pytest.raises(ValueError, match="fit gate mode"):
        FitGate("open")


def test_the_fit_gate_is_sam_at_init_and_round_trips(tmp_path):
    from stablesam import save_plugin
    from stablesam.models.files import attach_plugin

    sam = build_small_sam()
    model = StableSam(sam, FIT)
    predictor = StableSamPredictor(model)
    predictor.set_image(IMAGE)
    boxes = np.array([[20, 15, 150, 100], [5, 5, 60, 110]])

    def logits(m):
        p = StableSamPredictor(m)
        p.set_image(IMAGE)
        return p.predict_batch(boxes=boxes, multimask_output=False, return_logits=True)[2]

    model.plugins_enabled = False
    plain = logits(model)
    model.plugins_enabled = True
    assert np.abs(logits(model) - plain).max() < 1e-4
    with torch.no_grad():
        model.dsp.offset.bias.add_(0.5)  # move the offsets: the plugged output changes
        model.drp.fit_gate.scale.fill_(3.0)
    moved = logits(model)
    assert np.abs(moved - plain).max() > 1e-3
    save_plugin(model, tmp_path / "p.pt", base_name="small")
    loaded = attach_plugin(sam, tmp_path / "p.pt", force=True)
    assert loaded.config.routing_inputs == ("prompt", "iou", "fit")
    assert loaded.drp.fit_gate.scale.item() == 3.0
    assert np.abs(logits(loaded) - moved).max() < 1e-6


def test_the_fit_is_measured_on_the_bases_own_mask_and_moves_alpha():
    torch.manual_seed(0)
    model = StableSam(build_small_sam(), FIT)
    sam = model.sam
    with torch.no_grad():
        emb = sam.image_encoder(sam.preprocess(torch.rand(1, 3, 256, 256) * 255))
    boxes = torch.tensor([[40.0, 30.0, 200.0, 180.0], [0.0, 0.0, 255.0, 255.0]])
    model.plugins_enabled = False
    with torch.no_grad():
        base = model.decode(emb, boxes=boxes)[0][:, 0] > 0  # (2, 64, 64) low-res frame: 1/4 of 256
    model.plugins_enabled = True
    with torch.no_grad():
        model.decode(emb, boxes=boxes)
    expected = box_fit(base, boxes / 4)
    assert torch.allclose(model.last_fit[:, 0], expected) and torch.equal(model.last_fit[:, 1], torch.ones(2))
    # α(deformed) = sigmoid(8 (0.75 - fit)) at init: a worse fit gets more of the DSP
    gate = torch.sigmoid(8 * (0.75 - expected))
    assert torch.allclose(model.last_alpha[:, 0], gate, atol=1e-6)
    # clicks alone: no box, no fit, no gate (α = 0.5 at init)
    with torch.no_grad():
        model.decode(emb, points=(torch.tensor([[[120.0, 100.0]]]), torch.tensor([[1]])))
    assert torch.equal(model.last_fit, torch.zeros(1, 2))
    assert torch.allclose(model.last_alpha, torch.full((1, 2), 0.5))


def test_the_fit_gate_trains_and_is_refused_where_it_cannot_be_measured(monkeypatch):
    torch.manual_seed(0)
    model = StableSam(build_small_sam(), FIT)
    sam = model.sam
    with torch.no_grad():
        emb = sam.image_encoder(sam.preprocess(torch.rand(1, 3, 256, 256) * 255))
    model.decode(emb, boxes=torch.tensor([[40.0, 30.0, 200.0, 180.0]]))
    model.routing_graph["layer2"][0][:, 0].sum().backward()  # a loss on α reaches the gate
    assert model.drp.fit_gate.scale.grad is not None and model.drp.fit_gate.scale.grad != 0
    monkeypatch.setattr(Sam1Backend, "box_fit_routing", False)
    with pytest.raises(ValueError, match="routing input 'fit' is not available for SAM 1"):
        StableSam(build_small_sam(), FIT)


def test_onnx_export_refuses_the_fit_gate():
    from stablesam.data.images import InputError
    from stablesam.export.onnx_export import StableSamOnnxModel

    with pytest.raises(InputError, match="routing input 'fit'"):
        StableSamOnnxModel(StableSam(build_small_sam(), FIT))


def test_train_cli_trains_the_fit_gate(tmp_path):
    from conftest import SMALL_ARCH
    from helpers import make_folder
    from stablesam.cli import main
    from stablesam.models.files import read_plugin, save_sam_file

    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    out = tmp_path / "run"
    assert main(["train", "--data", str(make_folder(tmp_path / "toy", n=4)), "--model", f"sam:{sam_file}",
                 "--cache", str(tmp_path / "cache"), "--out", str(out), "--steps", "3", "--batch-size", "2",
                 "--rts-mixture", "gt-box=1,noisy-box=1,adv-box=1,adv-budget=4", "--routing-inputs", "prompt,iou,fit",
                 "--alpha-prior", "1", "--lr", "0.01"]) == 0
    plugin = read_plugin(out / "plugin.pt")
    assert plugin["config"].routing_inputs == ("prompt", "iou", "fit")
    gate = {k: v for k, v in plugin["state_dict"].items() if "fit_gate" in k}
    assert set(gate) == {"drp.fit_gate.scale", "drp.fit_gate.center"}
    assert (gate["drp.fit_gate.scale"] - 8.0).abs() > 1e-4 or (gate["drp.fit_gate.center"] - 0.75).abs() > 1e-4


def test_the_fit_gate_trains_at_its_own_rate(tmp_path):
    """--fit-gate-lr: at lr 1e-6 the rest hardly moves in 3 Adam steps, the gate at 0.2 moves ~0.2 a step
    (the two-sided gate: the random toy SAM's masks fit no box tightly enough to move the closing one)."""
    from conftest import SMALL_ARCH
    from helpers import make_folder
    from stablesam.cli import main
    from stablesam.models.files import read_plugin, save_sam_file

    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    data = make_folder(tmp_path / "toy", n=4)
    common = ["train", "--data", str(data), "--model", f"sam:{sam_file}", "--cache", str(tmp_path / "cache"),
              "--steps", "3", "--batch-size", "2", "--rts-mixture", "gt-box=1,noisy-box=1",
              "--alpha-prior", "1", "--lr", "1e-6"]
    assert main(common + ["--out", str(tmp_path / "plain"), "--fit-gate", "close"]) == 2  # no "fit" input
    assert main(common + ["--out", str(tmp_path / "run"), "--routing-inputs", "prompt,iou,fit",
                          "--fit-gate", "both", "--fit-gate-lr", "0.2"]) == 0
    plugin = read_plugin(tmp_path / "run" / "plugin.pt")
    assert plugin["config"].fit_gate == "both"
    state, init = plugin["state_dict"], FitGate.START["both"]
    moved = max(abs(state["drp.fit_gate.scale"].item() - init[0]), abs(state["drp.fit_gate.center"].item() - init[1]))
    assert moved > 0.1
    assert state["drp.fc2.bias"].abs().max() < 1e-5  # zero at init, 3 steps of lr 1e-6
