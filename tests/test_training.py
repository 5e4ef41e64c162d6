import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SMALL_ARCH, build_small_sam
from stablesam.models.cache import EmbeddingCache
from stablesam.models.files import read_plugin, save_sam_file
from stablesam.backends.official import read_weights
from stablesam.cli import main
from stablesam.data.datasets import FolderDataset
from stablesam.models.spec import build_model, parse_model_spec
from stablesam.training.rts import KINDS, RtsMixture, sample_rts_prompt
from stablesam.training.record import TrainConfig
from stablesam.training.loop import TrainStep, step_items
from stablesam.training.objects import prepare_objects
from helpers import make_folder
from helpers import SRC, losses, run


@pytest.fixture
def setup(tmp_path):
    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    data = make_folder(tmp_path / "toy", n=6)
    return sam_file, data, tmp_path


def train_args(sam_file, data, out, *extra):
    return ["train", "--data", str(data), "--model", f"sam:{sam_file}", "--out", str(out),
            "--cache", str(out.parent / "cache"), *map(str, extra)]


def test_rts_sampler_rates_and_validity():
    mixture = RtsMixture()
    rng = np.random.default_rng(0)
    mask = np.zeros((50, 70), bool)
    mask[10:30, 20:60] = True
    mask[35:45, 5:12] = True
    counts = dict.fromkeys(KINDS, 0)
    n = 4000
    for _ in range(n):
        kind, p = sample_rts_prompt(mask, mixture, rng)
        counts[kind] += 1
        assert len(p) == 1
        if p.boxes is not None:
            x0, y0, x1, y1 = p.boxes[0]
            assert 0 <= x0 < x1 <= 69 and 0 <= y0 < y1 <= 49
        if p.point_coords is not None:
            assert 1 <= p.point_coords.shape[1] <= mixture.max_points
            xs, ys = p.point_coords[0, :, 0].astype(int), p.point_coords[0, :, 1].astype(int)
            assert mask[ys, xs].all() and (p.point_labels == 1).all()
        if kind == "interactive":  # the session opens with a jittered box or one click
            assert (p.boxes is None) != (p.point_coords is None)
            continue
        assert (p.boxes is not None) == (kind != "points")  # adv-box: the ground-truth box the mining starts from
        assert (p.point_coords is not None) == (kind in ("points", "box+points"))
    for kind, rate in mixture.rates().items():
        assert abs(counts[kind] / n - rate) < 0.03, (kind, counts[kind] / n, rate)
    with pytest.raises(ValueError, match="unknown RTS prompt kind"):
        RtsMixture.parse("gt-box=1,scribble=2")
    assert RtsMixture.parse("noisy-box=1").rates()["noisy-box"] == 1.0


def test_decoder_mode_overfits_and_touches_only_the_decoder(setup, capsys):
    sam_file, data, tmp = setup
    out = tmp / "dt"
    assert main(train_args(sam_file, data, out, "--tune", "decoder", "--steps", 40, "--batch-size", 3,
                           "--rts-mixture", "noisy-box=1", "--lr", 3e-4)) == 0  # a toy run: faster than the default
    loss = losses(out)
    assert np.mean(loss[-5:]) < 0.5 * np.mean(loss[:5])
    before = read_weights(sam_file)["state_dict"]
    tuned = read_weights(out / "decoder.pt")["state_dict"]
    changed = [k for k, v in tuned.items() if not torch.equal(v, before["mask_decoder." + k])]
    assert changed and all(k in tuned for k in changed)
    assert main(["eval", "--data", str(data), "--model", f"sam:{sam_file}+decoder={out / 'decoder.pt'}",
                 "--prompts", "gt-box", "--out", str(tmp / "ev"), "--cache", str(tmp / "cache")]) == 0


def png_folder(root, n=6, size=(60, 80)):
    """make_folder's objects with lossless images: the same pixels whatever JPEG codec is installed."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        mask[10 + i : 40 + i, 15 : 50 + 3 * i] = 255
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    return root


PLUGIN_STEPS, PLUGIN_BATCH = 80, 6


@pytest.mark.slow
def test_plugins_mode_learns_and_leaves_sam_bit_identical(tmp_path, capsys):
    # A random decoder gives the plugins little to steer, so first fit the base's decoder to
    # ground-truth boxes (a "trained SAM"), then train the plugins on the prompt it handles
    # worst: single clicks, every object in every step (less gradient noise).
    tmp = tmp_path
    sam_file = tmp / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    data = png_folder(tmp / "toy")
    assert main(train_args(sam_file, data, tmp / "base", "--tune", "decoder", "--steps", 60,
                           "--batch-size", 3, "--no-rts", "--lr", 3e-4)) == 0
    base = f"{sam_file}+decoder={tmp / 'base' / 'decoder.pt'}"
    out = tmp / "plug"
    before = {k: v.clone() for k, v in read_weights(sam_file)["state_dict"].items()}
    tuned = read_weights(tmp / "base" / "decoder.pt")["state_dict"]
    assert main(train_args(base, data, out, "--steps", PLUGIN_STEPS, "--batch-size", PLUGIN_BATCH, "--lr", 1e-2,
                           "--rts-mixture", "points=1")) == 0
    # Learning is judged on fixed prompts: every (object, clicks) pair of the run, scored with the
    # trained plugins and without them (= the base). The logged per-step loss mixes that gain
    # with which clicks each step drew; this paired score does not. With --seed 3 to 14 in both
    # runs instead of 0 the ratio was 0.43-0.74: a margin that holds whatever numerics the
    # installed versions bring.
    model = build_model(parse_model_spec(f"sam:{base}+plugin={out / 'plugin.pt'}"), "cpu")
    objects = prepare_objects([FolderDataset(data)], model, EmbeddingCache(tmp / "cache"), progress=False)
    config = TrainConfig(model="", data=[], batch_size=PLUGIN_BATCH, seed=0,
                         mixture=RtsMixture.parse("points=1").to_dict())
    items = [item for step in range(PLUGIN_STEPS) for item in step_items(objects, step, config, 0, 1)]
    score = TrainStep(model, config.dice_weight)
    with torch.no_grad():
        trained = score(items).item()
        model.plugins_enabled = False
        untrained = score(items).item()
    assert trained < 0.85 * untrained, (trained, untrained)
    for k, v in read_weights(sam_file)["state_dict"].items():
        assert torch.equal(v, before[k])
    for k, v in read_weights(tmp / "base" / "decoder.pt")["state_dict"].items():
        assert torch.equal(v, tuned[k])
    plugin = read_plugin(out / "plugin.pt")
    assert plugin["meta"]["steps"] == PLUGIN_STEPS and plugin["meta"]["tune"] == "plugins"
    assert (out / "loss.png").stat().st_size > 0 and (out / "config.json").is_file()


def test_cached_training_never_calls_the_encoder(setup, monkeypatch, capsys):
    sam_file, data, tmp = setup
    assert main(train_args(sam_file, data, tmp / "a", "--steps", 2, "--batch-size", 2)) == 0
    assert "encoder runs: 6" in capsys.readouterr().out

    def boom(*a, **k):
        raise AssertionError("the image encoder ran")

    monkeypatch.setattr("stablesam.models.cache.encode_image", boom)
    assert main(train_args(sam_file, data, tmp / "b", "--steps", 3, "--batch-size", 2)) == 0
    assert "encoder runs: 0" in capsys.readouterr().out


@pytest.mark.parametrize("tune", [
    [],  # the plugins, default mixture
    ["--tune", "prompt+decoder", "--rts-mixture", "gt-box=0.5,interactive=0.5,interactive-clicks=2"],  # SAM's interactive
], ids=["plugins", "interactive"])
@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted(setup, tune):
    sam_file, data, tmp = setup
    common = ["--steps", 24, "--batch-size", 2, "--checkpoint-every", 2, "--lr", 3e-3, *tune]
    weights = "decoder.pt" if tune else "plugin.pt"
    full = run(train_args(sam_file, data, tmp / "full", *common))
    assert full.returncode == 0, full.stderr
    out = tmp / "killed"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "stablesam", *train_args(sam_file, data, out, *common)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpt = out / "checkpoint.pt"
        if ckpt.exists() and read_weights(ckpt)["step"] >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = read_weights(out / "checkpoint.pt")["step"]
    assert 6 <= step < 24, "the run was not killed mid-way"
    assert not (out / weights).exists()
    again = run(train_args(sam_file, data, out, *common))
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run(train_args(sam_file, data, out, *common, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    read = read_weights if tune else read_plugin
    a, b = read(tmp / "full" / weights), read(out / weights)
    parts = ["state_dict", "prompt_encoder"] if tune else ["state_dict"]
    for part in parts:
        for k in a[part]:
            assert torch.allclose(a[part][k], b[part][k], atol=1e-6, rtol=0), (part, k)
    assert losses(out) == pytest.approx(losses(tmp / "full"), abs=1e-6)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(setup):
    """Two processes train what one does; each embeds half of the 6 images into the shared cache."""
    sam_file, data, tmp = setup
    common = ["--steps", 6, "--batch-size", 4, "--lr", 3e-3]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                "-m", "stablesam", *train_args(sam_file, data, tmp / "two", *common)]
    two = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stdout and "encoder runs: 3" in two.stdout
    assert len(list((tmp / "cache").rglob("*.pt"))) == 6
    one = run(train_args(sam_file, data, tmp / "one", *common))
    assert one.returncode == 0, one.stderr
    assert "encoder runs: 0" in one.stdout
    a = read_plugin(tmp / "one" / "plugin.pt")["state_dict"]
    b = read_plugin(tmp / "two" / "plugin.pt")["state_dict"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    assert losses(tmp / "two") == pytest.approx(losses(tmp / "one"), rel=1e-4)


def test_bad_inputs(setup, monkeypatch, capsys):
    sam_file, data, tmp = setup
    empty = make_folder(tmp / "empty", n=2)
    from PIL import Image

    for m in (empty / "masks").iterdir():
        Image.fromarray(np.zeros((60, 80), np.uint8)).save(m)
    with pytest.warns(UserWarning):
        assert main(train_args(sam_file, empty, tmp / "e", "--steps", 2)) == 2
    assert "no usable object" in capsys.readouterr().err
    assert not (tmp / "e").exists()

    assert main(train_args(sam_file, data, tmp / "g", "--model", "grabcut")) == 2
    assert main(train_args(sam_file, data, tmp / "g", "--rts-mixture", "gt-box=-1")) == 2
    assert "RTS rates" in capsys.readouterr().err

    calls = {"n": 0}
    import stablesam.training.loop as training

    real = training.bce_dice_loss

    def poisoned(*args):
        calls["n"] += 1
        return real(*args) * (float("nan") if calls["n"] > 2 * 5 else 1.0)

    monkeypatch.setattr(training, "bce_dice_loss", poisoned)
    out = tmp / "nan"
    # gt boxes only: every sample of a step calls the mask loss once (sessions use their own loss)
    nan_run = ["--steps", 10, "--batch-size", 2, "--checkpoint-every", 2, "--rts-mixture", "gt-box=1"]
    assert main(train_args(sam_file, data, out, *nan_run)) == 1
    err = capsys.readouterr().err
    assert "loss is nan at step 6" in err and "step 4) is intact" in err
    assert read_weights(out / "checkpoint.pt")["step"] == 4
    assert not (out / "plugin.pt").exists()
    monkeypatch.setattr(training, "bce_dice_loss", real)
    assert main(train_args(sam_file, data, out, "--steps", 10, "--batch-size", 4, "--rts-mixture", "gt-box=1",
                           "--resume")) == 2
    assert "belongs to another run" in capsys.readouterr().err


def test_snapshot_epochs_equal_shorter_runs(setup, capsys):
    """--snapshot-epochs writes the weights of epoch E on the way, equal to an E-epoch run's."""
    sam_file, data, tmp = setup
    common = ["--batch-size", 4, "--lr", 3e-3, "--device", "cpu"]
    assert main(train_args(sam_file, data, tmp / "long", "--epochs", 3, "--snapshot-epochs", "2,1", *common)) == 0
    assert main(train_args(sam_file, data, tmp / "short", "--epochs", 1, *common)) == 0
    snap, short = read_plugin(tmp / "long" / "plugin_epochs1.pt"), read_plugin(tmp / "short" / "plugin.pt")
    assert snap["meta"]["steps"] == short["meta"]["steps"] < read_plugin(tmp / "long" / "plugin.pt")["meta"]["steps"]
    for k, v in short["state_dict"].items():
        assert torch.equal(snap["state_dict"][k], v), k
    two = read_plugin(tmp / "long" / "plugin_epochs2.pt")["state_dict"]
    assert any(not torch.equal(two[k], v) for k, v in short["state_dict"].items())
    capsys.readouterr()
    for bad in ("3", "0,1", "x", "1,1"):
        assert main(train_args(sam_file, data, tmp / "bad", "--epochs", 3, "--snapshot-epochs", bad, *common)) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error" in line]
        assert len(errors) == 1 and "--snapshot-epochs" in errors[0]
