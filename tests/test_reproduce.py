"""`stablesam reproduce` (the paper's experiment) on a tiny HQSeg-44K-shaped fixture, and the
precision plumbing (bf16 autocast, fp16 cache, NCCL under torchrun, out-of-memory messages)."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SMALL_ARCH, build_small_sam
from helpers import SRC, one_line_error, run
from stablesam import StableSam
from stablesam.models.cache import EmbeddingCache
from stablesam.models.files import save_sam_file
from stablesam.models.segmenters import SamSegmenter
from stablesam.prompts.generation import Prompts
from stablesam.reproduce.layout import TEST_SETS, TRAIN_SETS, LayoutError, check_layout
from stablesam.reproduce.paper import HEADLINE

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ecssd"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def cli(capsys, args: list) -> tuple:
    """`stablesam ARGS` in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from stablesam.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def make_hqseg(root: Path, train_stems=("0001",), test_stems=("0002",)) -> Path:
    """HQSeg-44K's folders under `root`, each set holding the given ECSSD images and masks (the
    same few images in every set: the encoder runs once per distinct image)."""
    if not DATA.is_dir():
        pytest.skip("needs ../shared/data (ECSSD images)")
    for sets, stems in ((TRAIN_SETS, train_stems), (TEST_SETS, test_stems)):
        for s in sets:
            for rel in {s.images, s.masks}:
                (root / rel).mkdir(parents=True, exist_ok=True)
            for stem in stems:
                shutil.copy(DATA / "images" / f"{stem}.jpg", root / s.images / f"{stem}.jpg")
                shutil.copy(DATA / "masks" / f"{stem}.png", root / s.masks / f"{stem}.png")
    return root


def test_layout_lists_match_docs():
    """The sets the command checks are the ones docs/datasets gives to train and eval."""
    for sets, name in ((TRAIN_SETS, "hqseg44k_train.txt"), (TEST_SETS, "stable_sam_test.txt")):
        lines = [ln for ln in (DOCS / "datasets" / name).read_text().splitlines() if ln and not ln.startswith("#")]
        expected = [f"{s.name}={s.images}" if s.images == s.masks else f"{s.name}={s.images}:{s.masks}" for s in sets]
        assert lines == expected


def test_missing_set_is_named(tmp_path):
    root = make_hqseg(tmp_path / "hq")
    shutil.rmtree(root / "thin_object_detection" / "COIFT")
    (root / "cascade_psp" / "fss_all" / "0001.jpg").unlink()
    with pytest.raises(LayoutError) as e:
        check_layout(root)
    message = str(e.value)
    assert "COIFT" in message and "FSS (no image" in message and "\n" not in message
    assert "DIS5K-VD" not in message  # the sets that are there are not named
    ckpt = tmp_path / "sam.pt"
    ckpt.write_bytes(b"")  # never read: the layout is checked first
    r = run(["reproduce", "--checkpoint", str(ckpt), "--model-type", "vit_b", "--hqseg", str(root),
             "--out", str(tmp_path / "out")])
    one_line_error(r.returncode, r.stderr, "COIFT", "missing")
    assert not (tmp_path / "out" / "report.md").exists()


def reproduce_args(ckpt: Path, model_type: str, root: Path, out: Path, *extra: str) -> list:
    return ["reproduce", "--checkpoint", str(ckpt), "--model-type", model_type, "--hqseg", str(root),
            "--out", str(out), "--with-dt", "--samples", "2", "--batch-size", "2", "--probe-images", "2", *extra]


def check_report(out: Path) -> None:
    report = (out / "report.md").read_text()
    rows = json.loads((out / "results.json").read_text())["rows"]
    for label, prompt, _ in HEADLINE:  # every headline row, with the paper's figures and measured ones
        line = next(ln for ln in report.splitlines() if ln.startswith(f"| {label} (`{prompt}`)"))
        assert "–" not in line.split("|")[5:], line  # every model measured
    assert "82.3" in report and "arXiv:2311.15776" in report
    for s in TEST_SETS:
        for model in ("SAM", "DT", "Stable-SAM"):
            for _, prompt, _ in HEADLINE:
                assert any(r["model"] == model and r["dataset"] == s.name and r["prompt"] == prompt for r in rows)
    assert (out / "plugin.pt").is_file()


def test_reproduce_small_sam_resumes(tmp_path, capsys):
    """Every stage on a small SAM file; a second run skips each finished stage, and a run with
    other settings in the same folder is refused."""
    root = make_hqseg(tmp_path / "hq")
    ckpt = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, ckpt)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, reproduce_args(ckpt, "sam", root, out))
    assert rc == 0, err[-2000:]
    check_report(out)
    state = json.loads((out / "reproduce.json").read_text())
    assert {"check", "estimate", "embed", "train-plugin", "train-dt"} <= set(state["done"])
    first = (out / "results.json").read_text()
    rc, stdout, err = cli(capsys, reproduce_args(ckpt, "sam", root, out))
    assert rc == 0, err[-2000:]
    assert "embeddings (done)" in stdout and "training (done)" in stdout
    assert stdout.count("(done)") == 4 + len(TEST_SETS)  # estimate, embed, 2 trainings, each set
    assert json.loads((out / "results.json").read_text())["rows"] == json.loads(first)["rows"]
    # a training stage killed before its first checkpoint: its folder holds files but no checkpoint
    state["done"].pop("train-plugin")
    (out / "reproduce.json").write_text(json.dumps(state))
    (out / "train_plugin" / "checkpoint.pt").unlink()
    rc, stdout, err = cli(capsys, reproduce_args(ckpt, "sam", root, out))
    assert rc == 0, err[-2000:]
    assert "[4/6] plugin training: stablesam train" in stdout and "DT baseline training (done)" in stdout
    rc, _, err = cli(capsys, reproduce_args(ckpt, "sam", root, out, "--seed", "3"))
    one_line_error(rc, err, "other settings", "seed")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    rc, _, err = cli(capsys, reproduce_args(ckpt, "sam", root, tmp_path / "other"))
    one_line_error(rc, err, "not empty")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine" and len(list((tmp_path / "other").iterdir())) == 1


def test_estimate_limit_needs_yes(tmp_path, capsys):
    root = make_hqseg(tmp_path / "hq")
    ckpt = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, ckpt)
    rc, _, err = cli(capsys, reproduce_args(ckpt, "sam", root, tmp_path / "out", "--max-disk-gb", "1e-6"))
    one_line_error(rc, err, "--yes", "GB of disk")
    assert not (tmp_path / "out" / "train_plugin").exists()


@pytest.mark.slow
def test_reproduce_vit_b_end_to_end_after_kill(tmp_path):
    """The real path: a random-init ViT-B in Meta's format at 1024 px, killed once the
    embeddings are cached, then resumed to the report. One image in every set: the 1024-px
    encoder runs once."""
    from segment_anything import sam_model_registry

    root = make_hqseg(tmp_path / "hq", test_stems=("0001",))
    torch.manual_seed(0)
    ckpt = tmp_path / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), ckpt)
    out = tmp_path / "out"
    env = {"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "stablesam", *reproduce_args(ckpt, "vit_b", root, out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = out / "reproduce.json"
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and "embed" in json.loads(state.read_text() or "{}").get("done", {}):
            break
        time.sleep(0.5)
    proc.kill()  # SIGKILL: no clean-up runs
    proc.communicate()
    assert "embed" in json.loads(state.read_text())["done"], "the first run did not reach the embeddings"
    assert not (out / "report.md").exists()
    r = run(reproduce_args(ckpt, "vit_b", root, out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "embeddings (done)" in r.stdout
    check_report(out)


# ----------------------------------------------------------------------------- precision

@pytest.fixture
def toy_image():
    img = np.random.default_rng(0).integers(0, 255, size=(120, 180, 3), dtype=np.uint8)
    img[30:90, 50:130] = (200, 40, 40)
    return img


BOXES = np.array([[40.0, 25.0, 140.0, 95.0], [10.0, 5.0, 170.0, 110.0]])


def test_bf16_plugins_at_init_equal_sam(toy_image):
    """Under bf16 autocast the identity-initialised plugins leave SAM's logits unchanged, and
    the plugins compute in fp32."""
    model = StableSam(build_small_sam())
    cache = EmbeddingCache(None, precision="bf16")
    plain = SamSegmenter("SAM", model, cache, precision="bf16")
    plain.plugins = False
    stable = SamSegmenter("Stable-SAM", model, cache, precision="bf16")
    outputs = []
    for seg in (plain, stable):
        seg.set_image(toy_image)
        model.plugins_enabled = seg.plugins
        with torch.autocast("cpu", dtype=torch.bfloat16):
            masks, scores, logits = seg.predictor.predict_batch(BOXES, return_logits=True)
        outputs.append((masks, scores, seg.predict(Prompts(boxes=BOXES))))
    assert outputs[1][0].dtype == np.float32
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])  # logits, bit for bit
    np.testing.assert_array_equal(outputs[0][2], outputs[1][2])  # masks
    assert stable.predictor.routing["alpha"].dtype == np.float32
    # and bf16 is not fp32: the same model at fp32 gives (slightly) other logits
    fp32 = SamSegmenter("SAM", model, EmbeddingCache(None), precision="fp32")
    fp32.set_image(toy_image)
    model.plugins_enabled = False
    logits32 = fp32.predictor.predict_batch(BOXES, return_logits=True)[0]
    assert not np.array_equal(logits32, outputs[0][0])
    assert np.abs(logits32 - outputs[0][0]).mean() < 0.1 * np.abs(logits32).mean()


def test_bf16_training_and_eval_cli(tmp_path, capsys):
    """`stablesam train --precision bf16` trains (the loss moves, the plugin changes) and
    `stablesam eval --precision bf16` scores it; the bf16 embeddings have keys of their own."""
    from helpers import make_folder

    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    data = make_folder(tmp_path / "toy", n=3)
    cache = tmp_path / "cache"
    rc, _, err = cli(capsys, ["train", "--data", str(data), "--model", f"sam:{sam_file}", "--out", str(tmp_path / "run"),
             "--cache", str(cache), "--steps", "3", "--batch-size", "2", "--lr", "1e-2", "--precision", "bf16"])
    assert rc == 0, err[-2000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["precision"] == "bf16"
    plugin = torch.load(tmp_path / "run" / "plugin.pt", weights_only=True)
    weights = plugin["state_dict"] if "state_dict" in plugin else plugin
    assert any(torch.is_tensor(v) and v.dtype == torch.float32 for v in weights.values())
    rc, _, err = cli(capsys, ["eval", "--data", str(data), "--model", f"sam:{sam_file}", "--model",
             f"sam:{sam_file}+plugin={tmp_path / 'run' / 'plugin.pt'}", "--prompts", "gt-box,points@1",
             "--samples", "2", "--cache", str(cache), "--out", str(tmp_path / "eval"), "--precision", "bf16"])
    assert rc == 0, err[-2000:]
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())["rows"]
    assert len(rows) == 4 and all(0 <= row["mIoU"] <= 1 for row in rows)
    assert len(list(cache.rglob("*.pt"))) == 3  # one bf16 entry per image, training and eval shared them
    rc, _, err = cli(capsys, ["train", "--data", str(data), "--model", f"sam:{sam_file}", "--out", str(tmp_path / "run"),
             "--cache", str(cache), "--steps", "3", "--batch-size", "2", "--lr", "1e-2", "--resume"])
    one_line_error(rc, err, "precision")  # a bf16 run does not resume as fp32


def test_streamed_embeddings_train_the_same_weights(tmp_path, capsys):
    """--stream-embeddings (what reproduce uses: no embedding held in memory) gives the same
    plugin as holding them in memory."""
    from helpers import make_folder

    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    data = make_folder(tmp_path / "toy", n=3)
    weights = []
    for name, extra in (("memory", []), ("streamed", ["--stream-embeddings"])):
        rc, _, err = cli(capsys, ["train", "--data", str(data), "--model", f"sam:{sam_file}", "--out",
                                  str(tmp_path / name), "--cache", str(tmp_path / "cache"), "--steps", "3",
                                  "--batch-size", "2", "--lr", "1e-2", *extra])
        assert rc == 0, err[-2000:]
        weights.append(torch.load(tmp_path / name / "plugin.pt", weights_only=True))
    flat = [w["state_dict"] for w in weights]
    assert flat[0].keys() == flat[1].keys()
    assert all(torch.equal(flat[0][k], flat[1][k]) for k in flat[0])
    from stablesam.training.objects import make_object

    model, img = StableSam(build_small_sam()), np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[5:20, 10:30] = True
    cache = EmbeddingCache(tmp_path / "c2")
    streamed = make_object("toy/a", img, mask, None, model, cache, stream=True)
    held = make_object("toy/a", img, mask, None, model, cache)
    assert streamed.embedding.numel() == 0 and torch.equal(streamed.features()[0], held.features()[0])
    rc, _, err = cli(capsys, ["train", "--data", str(data), "--model", f"sam:{sam_file}", "--out",
                              str(tmp_path / "nocache"), "--no-cache", "--steps", "1", "--stream-embeddings"])
    one_line_error(rc, err, "--stream-embeddings")


def test_cache_stores_fp16_returns_fp32(tmp_path, toy_image):
    sam = build_small_sam()
    cache = EmbeddingCache(tmp_path / "c", dtype=torch.float16)
    first = cache.get(sam, toy_image)
    (entry,) = list((tmp_path / "c").rglob("*.pt"))
    assert torch.load(entry, weights_only=True)["features"].dtype == torch.float16
    again = EmbeddingCache(tmp_path / "c", dtype=torch.float16).get(sam, toy_image)
    assert first.features.dtype == again.features.dtype == torch.float32
    assert torch.equal(first.features, again.features)  # fresh and cached: the same numbers
    exact = EmbeddingCache(None).get(sam, toy_image).features
    assert not torch.equal(exact, first.features) and torch.allclose(exact, first.features, atol=1e-2, rtol=1e-2)


def test_cache_is_fp16_on_cuda_by_default():
    from stablesam.precision import default_cache_dtype

    assert default_cache_dtype("cuda:0") == torch.float16 and default_cache_dtype("cpu") == torch.float32


def test_torchrun_picks_nccl_on_cuda(monkeypatch):
    import torch.distributed as dist

    from stablesam.commands.train import init_distributed

    picked = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: picked.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    assert init_distributed(None) == ("cuda:1", 1, 2) and picked == ["nccl"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    init_distributed(None)
    assert picked == ["nccl", "gloo"]


def test_out_of_memory_is_one_line_with_batch_size(monkeypatch, tmp_path):
    from stablesam.training import loop
    from stablesam.training.objects import make_object
    from stablesam.training.record import TrainConfig, TrainingError

    model = StableSam(build_small_sam())
    img = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:40, 10:40] = True
    objects = [make_object("toy/0", img, mask, None, model, EmbeddingCache(None))]

    def oom(self, items):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop.TrainStep, "forward", oom)
    config = TrainConfig(model="sam", data=["toy"], total_steps=2, batch_size=16)
    with pytest.raises(TrainingError) as e:
        loop.train(model, objects, config, tmp_path / "run", progress=False)
    assert str(e.value) == ("out of GPU memory in training step 1 at --batch-size 16: try --batch-size 8 "
                            "(or --precision bf16)")
