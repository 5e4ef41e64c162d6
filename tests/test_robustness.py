"""Outputs that never overwrite inputs, a cache that cannot lie, a resume that checks first,
logs that survive interruptions, and one-line warnings."""

import csv
import hashlib
import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import build_small_sam
from stablesam.models.cache import EmbeddingCache
from stablesam.cli import main, one_line_warnings
from stablesam.data.datasets import DataWarning
from helpers import make_folder
from helpers import train_args, train_setup  # noqa: F401 (train_setup: a fixture)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def segment(capsys, photo, *args):
    rc = main(["segment", str(photo), "--box", "5,5,30,30", *map(str, args)])
    return rc, capsys.readouterr().err


def test_out_equal_to_the_input_is_refused(tmp_path, capsys, fake_embedded, photo, monkeypatch):
    digest = sha256(photo)
    (tmp_path / "link.png").symlink_to(photo)
    os.link(photo, tmp_path / "hard.png")
    monkeypatch.chdir(tmp_path)
    for out in (photo, "photo.png", "./sub/../photo.png", tmp_path / "link.png", "hard.png"):
        rc, err = segment(capsys, photo, "--out", out)
        assert rc == 2 and "is the same file as" in err and len(err.splitlines()) == 1, err
        assert sha256(photo) == digest
    rc, err = segment(capsys, photo, "--out", "m.png", "--overlay", photo)
    assert rc == 2 and "--overlay" in err and sha256(photo) == digest
    rc, err = segment(capsys, photo, "--out", "m.png", "--overlay", "m.png")
    assert rc == 2 and "same file as m.png" in err
    assert not (tmp_path / "m.png").exists() and not list(tmp_path.glob("*.tmp"))


def test_outputs_are_written_in_the_format_their_extension_names(tmp_path, capsys, fake_embedded, photo):
    for bad in ("mask.jpg", "mask.webp", "mask", "mask.xyz"):
        rc, err = segment(capsys, photo, "--out", tmp_path / bad)
        assert rc == 2 and "extension must be one of .png, .bmp, .tif, .tiff" in err
    (tmp_path / "folder.png").mkdir()
    rc, err = segment(capsys, photo, "--out", tmp_path / "folder.png")
    assert rc == 2 and "is a folder" in err
    rc, err = segment(capsys, photo, "--out", tmp_path / "m.tif", "--overlay", tmp_path / "o.jpg")
    assert rc == 0, err
    mask, over = Image.open(tmp_path / "m.tif"), Image.open(tmp_path / "o.jpg")
    assert mask.format == "TIFF" and over.format == "JPEG" and over.size == (50, 40)
    assert set(np.unique(np.array(mask))) <= {0, 255}
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_entry_with_flipped_tensor_bytes_is_recomputed(tmp_path):
    sam = build_small_sam()
    calls = []
    sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    first = EmbeddingCache(tmp_path).get(sam, image)
    (entry,) = tmp_path.rglob("*.pt")
    raw = bytearray(entry.read_bytes())
    tensor_bytes = first.features.cpu().numpy().tobytes()
    at = raw.find(tensor_bytes[4096:4160])  # somewhere inside the stored tensor data
    assert at > 0
    for i in range(at, at + 8):
        raw[i] ^= 0x5A
    entry.write_bytes(bytes(raw))
    damaged = torch.load(entry, weights_only=True)["features"]  # still a valid file, other values
    assert not torch.equal(damaged, first.features) and torch.isfinite(damaged).all()  # only a checksum can tell
    cache = EmbeddingCache(tmp_path)
    again = cache.get(sam, image)
    assert cache.encoder_calls == 1 and len(calls) == 2
    assert torch.equal(again.features, first.features)
    assert torch.equal(torch.load(entry, weights_only=True)["features"], first.features)  # rewritten
    EmbeddingCache(tmp_path).get(sam, image)
    assert len(calls) == 2  # the rewritten entry passes its check


def test_resume_refuses_a_bad_checkpoint_before_embedding_any_image(train_setup, capsys, monkeypatch):
    sam_file, data, tmp = train_setup
    out = tmp / "run"
    out.mkdir()

    def no_encoder(*a, **k):
        raise AssertionError("images were embedded before the checkpoint was checked")

    monkeypatch.setattr("stablesam.models.cache.encode_image", no_encoder)
    torch.save({"w": torch.zeros(1000)}, tmp / "valid.pt")
    cases = [
        (b"garbage, not a checkpoint", "refused by torch.load"),
        ((tmp / "valid.pt").read_bytes()[:500], "not a readable PyTorch checkpoint"),  # truncated
        ({"state_dict": {"w": torch.zeros(2)}}, "is not a stablesam training checkpoint"),  # foreign
    ]
    for content, message in cases:
        if isinstance(content, bytes):
            (out / "checkpoint.pt").write_bytes(content)
        else:
            torch.save(content, out / "checkpoint.pt")
        assert main(train_args(sam_file, data, out, "--steps", 4, "--resume")) == 2
        err = capsys.readouterr().err
        assert message in err and "cannot resume" in err and len(err.splitlines()) == 1, err
    monkeypatch.undo()
    assert main(train_args(sam_file, data, out.parent / "other", "--steps", 2, "--batch-size", 2)) == 0
    (out / "checkpoint.pt").write_bytes((out.parent / "other" / "checkpoint.pt").read_bytes())
    monkeypatch.setattr("stablesam.models.cache.encode_image", no_encoder)
    assert main(train_args(sam_file, data, out, "--steps", 2, "--batch-size", 2, "--lr", 0.5, "--resume")) == 2
    assert "belongs to another run (differs in: lr)" in capsys.readouterr().err
    assert main(train_args(sam_file, data, out, "--lr", "nan")) == 2
    assert "finite" in capsys.readouterr().err


def test_checkpoints_from_before_the_newest_plugin_options_still_resume(train_setup, capsys):
    sam_file, data, tmp = train_setup
    out = tmp / "old_run"
    # release 0.1's defaults, which its checkpoints hold without naming the newer options
    old = ("--projection-rank", 0, "--offset-width", 0,
           "--rts-mixture", "gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15,part-clicks=0")
    assert main(train_args(sam_file, data, out, "--steps", 4, "--batch-size", 2, "--checkpoint-every", 2, *old)) == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["step"], ckpt["log"] = 2, ckpt["log"][:2]
    for key in ("offset_width", "projection_rank"):  # options added after that release
        del ckpt["config"]["plugin"][key]
    del ckpt["config"]["mixture"]["part_clicks"]
    torch.save(ckpt, out / "checkpoint.pt")
    # today's defaults are another run; the options it was trained with continue it
    assert main(train_args(sam_file, data, out, "--steps", 4, "--batch-size", 2, "--resume")) == 2
    assert "differs in: mixture, plugin" in capsys.readouterr().err
    assert main(train_args(sam_file, data, out, "--steps", 4, "--batch-size", 2, "--resume", *old)) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def read_log(out):
    with open(out / "log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_log_is_written_at_checkpoints_and_its_clock_goes_on_after_resume(train_setup, capsys, monkeypatch):
    sam_file, data, tmp = train_setup
    out = tmp / "run"
    args = train_args(sam_file, data, out, "--steps", 6, "--batch-size", 2, "--checkpoint-every", 2)
    import stablesam.training.loop as training

    real, calls = training.bce_dice_loss, []

    def interrupted(*a):
        calls.append(1)
        if len(calls) > 2 * 4:  # step 5 of 6: after the checkpoint of step 4
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(training, "bce_dice_loss", interrupted)
    assert main(args) == 130
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4]  # log.csv of the last checkpoint
    assert not (out / "loss.png").exists()
    monkeypatch.setattr(training, "bce_dice_loss", real)
    stale = out / "loss.png.k1ll3d.tmp"  # what a write killed mid-way leaves
    stale.write_bytes(b"half a png")
    assert main(args + ["--resume"]) == 0
    log = read_log(out)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    seconds = [r["seconds"] for r in log]
    assert seconds == sorted(seconds) and seconds[4] >= seconds[3]  # not restarted at 0
    assert not stale.exists() and (out / "loss.png").stat().st_size > 0
    assert not list(out.glob("*.tmp"))


def test_warnings_are_one_line_and_bad_files_are_listed_in_results(tmp_path, capsys, fake_embedded):
    with one_line_warnings("stablesam eval"):
        text = warnings.formatwarning(DataWarning("image x.jpg: corrupt; skipped"), DataWarning, "data.py", 3, "src")
    assert text == "stablesam eval: warning: image x.jpg: corrupt; skipped\n"
    assert "src" in warnings.formatwarning(DataWarning("m"), DataWarning, "data.py", 3, "src")  # restored
    data = make_folder(tmp_path / "toy", n=3)
    (data / "images" / "im1.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(DataWarning, match="im1.jpg"):
        assert main(["eval", "--data", str(data), "--model", "tiny-sam", "--prompts", "gt-box", "--samples", "1",
                     "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "ev")]) == 0
    saved = json.loads((tmp_path / "ev" / "results.json").read_text())
    (bad,) = saved["bad_files"]
    assert bad["dataset"] == "toy" and "im1.jpg" in bad["problem"]
    assert "1 bad files or objects were skipped (see bad_files" in (tmp_path / "ev" / "results.md").read_text()


def test_help_and_info_list_what_each_command_accepts(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    segment_help = capsys.readouterr().out
    assert "SPEC+decoder=PATH" in segment_help and "grabcut" not in segment_help
    assert "--box -5,0,9,9 is read as --box=-5,0,9,9" in " ".join(segment_help.split())
    assert main(["info"]) == 0
    info = capsys.readouterr().out
    assert "SPEC+decoder=PATH" in info and "grabcut@N" in info
