"""No command deletes or replaces a file it did not write: an output file that exists, or an
output folder that is not empty, is a one-line error unless --force; with --force a command
replaces only its own files (each atomically) and keeps every other file. Also: the launcher
imports no torch for `--help`, and `info` builds no model."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import SRC, make_folder, one_line_error, train_args, train_setup  # noqa: F401 (fixture)
from stablesam.cli import COMMANDS, build_parser, main


def run(capsys, *args):
    rc = main([*map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def snapshot(folder: Path) -> dict:
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def user_folder(tmp_path):
    """A user's folder: a precious note and an images/ folder holding the input photo."""
    folder = tmp_path / "work"
    (folder / "images").mkdir(parents=True)
    (folder / "precious.txt").write_text("do not delete")
    photo = folder / "images" / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    return folder


def kept(before: dict, folder: Path, replaced=()) -> None:
    """Every file of `before` is still there, unchanged unless named in `replaced`."""
    after = snapshot(folder)
    for name, content in before.items():
        assert name in after, f"{name} was deleted"
        if name not in replaced:
            assert after[name] == content, f"{name} was changed"


def test_segment_keeps_an_existing_mask_unless_force(capsys, fake_embedded, user_folder):
    photo, mask = user_folder / "images" / "photo.png", user_folder / "mask.png"
    mask.write_bytes(b"the user's own file")
    before = snapshot(user_folder)
    rc, _, err = run(capsys, "segment", photo, "--box", "5,5,40,30", "--out", mask)
    one_line_error(rc, err, "--out", "exists", "--force")
    assert snapshot(user_folder) == before
    rc, _, err = run(capsys, "segment", photo, "--box", "5,5,40,30", "--out", user_folder / "new.png",
                     "--overlay", user_folder / "precious.txt")
    assert rc == 2 and snapshot(user_folder) == before  # (the overlay's name is checked too)
    rc, _, err = run(capsys, "segment", photo, "--box", "5,5,40,30", "--out", mask, "--force")
    assert rc == 0, err
    assert Image.open(mask).size == (64, 48)
    kept(before, user_folder, replaced={"mask.png"})


def test_segment_everything_keeps_the_users_files(capsys, fake_embedded, user_folder):
    """The reported loss: a folder holding masks.json, a note and the input image's folder."""
    photo = user_folder / "images" / "photo.png"
    (user_folder / "masks.json").write_text('{"mine": true}')
    before = snapshot(user_folder)
    args = ("--everything", "--points-per-side", 3, "--pred-iou-thresh", 0, "--stability-thresh", 0)
    rc, _, err = run(capsys, "segment", photo, *args, "--out", user_folder)
    one_line_error(rc, err, "--out", "not empty", "--force")
    assert snapshot(user_folder) == before
    rc, out, err = run(capsys, "segment", photo, *args, "--out", user_folder, "--force")
    assert rc == 0, err
    assert "grid: 3x3 clicks (given)" in out
    kept(before, user_folder, replaced={"masks.json"})
    summary = json.loads((user_folder / "masks.json").read_text())
    assert summary["count"] == len(summary["masks"]) > 0
    # a rerun with fewer masks: its own earlier mask files go, the user's files stay
    (user_folder / "mask_999.png").write_bytes(b"stale")
    summary["masks"].append({"file": "mask_999.png"})
    (user_folder / "masks.json").write_text(json.dumps(summary))
    (user_folder / "my_mask_notes.png").write_bytes(b"the user's")
    rc, _, err = run(capsys, "segment", photo, *args, "--out", user_folder, "--force")
    assert rc == 0, err
    assert not (user_folder / "mask_999.png").exists() and (user_folder / "my_mask_notes.png").read_bytes() == b"the user's"
    kept(before, user_folder, replaced={"masks.json"})


def test_segment_everything_makes_a_new_folder_or_fills_an_empty_one(capsys, fake_embedded, user_folder):
    photo = user_folder / "images" / "photo.png"
    args = ("--everything", "--points-per-side", 2, "--pred-iou-thresh", 0, "--stability-thresh", 0)
    empty = user_folder / "empty"
    empty.mkdir()
    for out in (user_folder / "new" / "masks", empty):
        rc, _, err = run(capsys, "segment", photo, *args, "--out", out)
        assert rc == 0, err
        assert (out / "masks.json").is_file() and (out / "overlay.png").is_file()
    assert sorted(p.name for p in (user_folder / "new").iterdir()) == ["masks"]  # no temporary folder left


def test_eval_keeps_the_users_files(capsys, train_setup):
    sam_file, data, tmp = train_setup
    out = tmp / "results"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    (out / "results.md").write_text("my own notes")
    before = snapshot(out)
    args = ["eval", "--data", data, "--model", f"sam:{sam_file}", "--prompts", "gt-box", "--samples", 1,
            "--limit", 1, "--cache", tmp / "cache", "--out", out]
    rc, _, err = run(capsys, *args)
    one_line_error(rc, err, "--out", "not empty", "--force")
    assert snapshot(out) == before
    rc, _, err = run(capsys, *args, "--force")
    assert rc == 0, err
    kept(before, out, replaced={"results.md"})
    assert (out / "results.json").is_file() and "gt-box" in (out / "results.md").read_text()


def test_train_keeps_the_users_files(capsys, train_setup):
    sam_file, data, tmp = train_setup
    out = tmp / "run"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    before = snapshot(out)
    rc, _, err = run(capsys, *train_args(sam_file, data, out, "--steps", 1, "--batch-size", 2))
    one_line_error(rc, err, "--out", "not empty", "--force")
    assert snapshot(out) == before
    rc, _, err = run(capsys, *train_args(sam_file, data, out, "--steps", 1, "--batch-size", 2, "--force"))
    assert rc == 0, err
    kept(before, out)
    assert (out / "plugin.pt").is_file() and (out / "checkpoint.pt").is_file()
    # a run there now: --resume continues it; without --resume or --force it is refused
    rc, _, err = run(capsys, *train_args(sam_file, data, out, "--steps", 1, "--batch-size", 2))
    one_line_error(rc, err, "already holds a training run", "--resume", "--force")


def test_export_onnx_keeps_an_existing_file_unless_force(capsys, fake_embedded, user_folder):
    pytest.importorskip("onnx")
    target = user_folder / "decoder.onnx"
    target.write_bytes(b"the user's model")
    before = snapshot(user_folder)
    rc, _, err = run(capsys, "export-onnx", "--out", target)
    one_line_error(rc, err, "--out", "exists", "--force")
    assert snapshot(user_folder) == before
    rc, _, err = run(capsys, "export-onnx", "--out", target, "--force")
    assert rc == 0, err
    kept(before, user_folder, replaced={"decoder.onnx"})
    assert target.read_bytes() != b"the user's model"


def test_help_imports_no_torch_and_lists_every_command():
    code = ("import sys; from stablesam.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'segment_anything', 'numpy', 'cv2', 'starlette', 'onnx') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    for name in COMMANDS:
        assert f"    {name}" in result.stdout


def test_the_launchers_summaries_are_the_commands_own_help():
    full = build_parser()  # every command's own subparser
    sub = next(a for a in full._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name, (_, summary) in COMMANDS.items():
        assert summary is None or helps[name] == summary, name


def test_info_builds_no_model(capsys, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("info built a model")

    for where in ("stablesam.models.spec.build_model", "stablesam.models.loading.load_model",
                  "stablesam.models.embedded.load_embedded_sam"):
        monkeypatch.setattr(where, refuse)
    rc, out, _ = run(capsys, "info")
    assert rc == 0 and "tiny-sam" in out and 'pip install "stable-segment-anything[' not in out.split("SAM families")[0]


def test_the_sam_generator_defaults_in_help_are_segment_anythings():
    import inspect

    from segment_anything import SamAutomaticMaskGenerator

    from stablesam.commands.segment import SAM_GENERATOR_DEFAULTS

    params = inspect.signature(SamAutomaticMaskGenerator).parameters
    assert {k: params[k].default for k in SAM_GENERATOR_DEFAULTS} == SAM_GENERATOR_DEFAULTS
