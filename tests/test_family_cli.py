"""Every SAM family through the command line, the embedding cache, training and the demo:
random-init models saved in each family's official format (see test_hq/test_sam2/test_hf)."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import build_small_sam
from stablesam.cli import main
from stablesam.models.files import read_plugin
from stablesam.backends.official import read_weights
from helpers import make_folder
from helpers import SRC, losses, run
from helpers import family_files

IMAGE = np.random.default_rng(0).integers(0, 255, size=(60, 80, 3), dtype=np.uint8)


@pytest.mark.parametrize("family", ["hq", "sam2", "hf"])
def test_segment_each_family(family, tmp_path, capsys):
    base, stable = family_files(tmp_path, family)
    image = tmp_path / "im.png"
    Image.fromarray(IMAGE).save(image)
    out = tmp_path / "mask.png"
    assert main(["segment", str(image), "--box", "10,5,60,50", "--point", "30,30", "--model", stable,
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "alpha = " in printed
    mask = np.array(Image.open(out))
    assert mask.shape == IMAGE.shape[:2] and set(np.unique(mask)) <= {0, 255}
    # a plugin of this family on a SAM 1 base: one line, exit 2
    small = tmp_path / "small.pth"
    torch.save(build_small_sam().state_dict(), small)
    plugin = stable.split("+plugin=")[1]
    assert main(["segment", str(image), "--box", "10,5,60,50", "--model", f"sam:{small}+plugin={plugin}",
                 "--out", str(out), "--device", "cpu"]) == 2


def test_wrong_family_checkpoint_and_missing_extra(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sam2", reason="needs the [sam2] extra")
    image = tmp_path / "im.png"
    Image.fromarray(IMAGE).save(image)
    sam1 = tmp_path / "sam_vit_b.pth"
    torch.save(build_small_sam().state_dict(), sam1)
    args = ["segment", str(image), "--box", "10,5,60,50", "--out", str(tmp_path / "m.png"), "--device", "cpu"]
    assert main([*args, "--model", f"sam2.1_hiera_t:{sam1}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this is a SAM 1 checkpoint, not SAM 2.1" in err[0]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sam2" else real(name, *a))
    assert main([*args, "--model", f"sam2.1_hiera_t:{sam1}"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "stable-segment-anything[sam2]"' in err


def test_eval_and_cache_per_family(tmp_path, capsys):
    """eval with a transformers model and its Stable version; the cache keys by family."""
    base, stable = family_files(tmp_path, "hf")
    data = make_folder(tmp_path / "toy", n=2)
    cache = tmp_path / "cache"
    assert main(["eval", "--data", str(data), "--model", base, "--model", stable, "--prompts", "gt-box,points@1",
                 "--samples", "2", "--out", str(tmp_path / "ev"), "--cache", str(cache), "--device", "cpu"]) == 0
    assert (tmp_path / "ev" / "results.json").is_file()
    assert len(list(cache.rglob("*.pt"))) == 2  # one entry per image, shared by both models


@pytest.mark.parametrize("family,grid", [("hq", (64, 64)), ("sam2", (64, 64)), ("hf", (16, 16))])
@pytest.mark.slow
def test_demo_engine_each_family(family, grid, tmp_path):
    """The demo's engine (upload, encode, both models on one prompt) on each family's model
    with its plugin."""
    from stablesam.demo.engine import DemoEngine, Prompt
    from stablesam.models.spec import build_model, parse_model_spec

    _, stable = family_files(tmp_path, family)
    engine = DemoEngine(build_model(parse_model_spec(stable), "cpu"))
    buf = io.BytesIO()
    Image.fromarray(IMAGE).save(buf, format="PNG")
    item, _ = engine.add_image(buf.getvalue(), "im.png", 10_000_000, 10_000_000)
    out = engine.predict(item, Prompt(np.array([10.0, 5.0, 60.0, 50.0]), np.zeros((0, 2)), np.zeros(0, int)))
    assert set(out) >= {"sam", "stable_sam"} and len(out["stable_sam"]["alpha"]) == 2
    assert engine.grid == grid
    wobble = engine.wobble(item, Prompt(np.array([10.0, 5.0, 60.0, 50.0]), np.zeros((0, 2)), np.zeros(0, int)),
                           k=3, scale=0.2, seed=0)
    assert 0.0 <= wobble["stable_sam"]["stability"] <= 1.0 and len(wobble["prompts"]["boxes"]) == 3


@pytest.mark.slow
def test_sam2_training_equals_itself_after_sigkill_and_resume_and_under_torchrun(tmp_path):
    """Plugin training of a SAM 2.1: a run killed mid-way and resumed, and a run under torchrun
    (2 processes), each end with the weights and losses of one uninterrupted process."""
    base, _ = family_files(tmp_path, "sam2")
    data = make_folder(tmp_path / "toy", n=2)
    common = ["--steps", 8, "--batch-size", 4, "--checkpoint-every", 2, "--lr", 3e-3, "--device", "cpu"]

    def args(out, *extra):
        return ["train", "--data", str(data), "--model", base, "--out", str(out),
                "--cache", str(tmp_path / "cache"), *map(str, common), *map(str, extra)]

    def assert_same_run(out, atol, rtol):
        a = read_plugin(tmp_path / "full" / "plugin.pt")["state_dict"]
        b = read_plugin(out / "plugin.pt")["state_dict"]
        for k in a:
            assert torch.allclose(a[k], b[k], atol=atol, rtol=rtol), k
        assert losses(out) == pytest.approx(losses(tmp_path / "full"), rel=rtol, abs=atol)

    full = run(args(tmp_path / "full"), timeout=600)
    assert full.returncode == 0, full.stderr
    assert read_plugin(tmp_path / "full" / "plugin.pt")["base"]["family"] == "sam2"

    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "stablesam", *args(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        ckpt = out / "checkpoint.pt"
        if ckpt.exists() and read_weights(ckpt)["step"] >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = read_weights(out / "checkpoint.pt")["step"]
    assert 4 <= step < 8, "the run was not killed mid-way"
    resumed = run(args(out, "--resume"), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(out, atol=1e-6, rtol=0)

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
                "-m", "stablesam", *args(tmp_path / "two")]
    two = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stdout
    assert read_plugin(tmp_path / "two" / "plugin.pt")["base"]["family"] == "sam2"
    assert_same_run(tmp_path / "two", atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["hq", "hf"])
@pytest.mark.slow
def test_train_plugins_and_decoder_each_family(family, tmp_path, capsys):
    """`stablesam train` in both modes on cached embeddings; the files load back onto the base."""
    from stablesam.models.spec import build_model, parse_model_spec

    base, _ = family_files(tmp_path, family)
    data = make_folder(tmp_path / "toy", n=1)
    common = ["--data", str(data), "--model", base, "--steps", "2", "--batch-size", "2",
              "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(["train", *common, "--out", str(tmp_path / "plugins")]) == 0
    assert main(["train", *common, "--tune", "decoder", "--out", str(tmp_path / "dt")]) == 0
    assert "encoder runs: 0" in capsys.readouterr().out  # the second run reads the cache
    lrs = [json.loads((tmp_path / run / "config.json").read_text())["lr"] for run in ("plugins", "dt")]
    assert lrs == [1e-4, 3e-6]  # without --lr: each mode's leave-one-dataset-out rate
    plugin = read_plugin(tmp_path / "plugins" / "plugin.pt")
    assert plugin["base"]["family"] == family
    model = build_model(parse_model_spec(f"{base}+plugin={tmp_path / 'plugins' / 'plugin.pt'}"), "cpu")
    assert model.plugins_enabled and model.family == family
    tuned = build_model(parse_model_spec(f"{base}+decoder={tmp_path / 'dt' / 'decoder.pt'}"), "cpu")
    assert not tuned.plugins_enabled
