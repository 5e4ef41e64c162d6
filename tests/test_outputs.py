"""Outputs that cannot be written are a one-line error before any work; a command's outputs are
written all together or not at all; a replaced file keeps its mode."""

import errno
import os

import numpy as np
import pytest
from PIL import Image

from stablesam.cli import main
from stablesam.fileio import folder_problem, write_together
from helpers import make_folder
from helpers import KINDS, leftovers, one_line_error, unwritable_folder


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def run(capsys, *args):
    rc = main([*map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def no_model(monkeypatch):
    """Any model build fails the test: the error must come before the work."""
    def refuse(*a, **k):
        raise AssertionError("a model was built before the outputs were checked")

    for where in ("stablesam.models.spec.build_model", "stablesam.models.spec.build_sam_for"):
        monkeypatch.setattr(where, refuse)


@pytest.mark.parametrize("kind", KINDS)
def test_unwritable_outputs_of_every_command_are_one_line_errors(tmp_path, capsys, monkeypatch, photo, kind):
    bad = unwritable_folder(tmp_path, kind)
    data = make_folder(tmp_path / "toy", n=2)
    no_model(monkeypatch)
    cases = [
        (["segment", photo, "--box", "5,5,30,30", "--out", bad / "m.png"], "--out"),
        (["segment", photo, "--box", "5,5,30,30", "--out", tmp_path / "ok.png", "--overlay", bad / "o.png"],
         "--overlay"),
        (["segment", photo, "--everything", "--out", bad / "masks"], "--out"),
        (["export-onnx", "--out", bad / "d.onnx"], "--out"),
        (["eval", "--data", data, "--model", "tiny-sam", "--out", bad / "ev"], "--out"),
        (["train", "--data", data, "--model", "tiny-sam", "--out", bad / "run"], "--out"),
    ]
    for args, option in cases:
        rc, _, err = run(capsys, *args)
        one_line_error(rc, err, option, str(bad).split("/sub")[0])
    assert not (tmp_path / "ok.png").exists()  # mask and overlay: both or neither
    assert not leftovers(tmp_path) and not list(tmp_path.glob("*.onnx"))


def test_an_output_that_is_no_regular_file_is_refused(tmp_path, capsys, monkeypatch, photo):
    no_model(monkeypatch)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    rc, _, err = run(capsys, "segment", photo, "--box", "5,5,30,30", "--out", fifo)
    one_line_error(rc, err, "exists and is not a regular file")


def test_mask_and_overlay_are_written_together_or_not_at_all(tmp_path, capsys, fake_embedded, photo, monkeypatch):
    mask, over = tmp_path / "m.png", tmp_path / "o.png"
    import stablesam.commands.segment as segment

    real = segment.image_writer

    def full_disk_for_the_overlay(path, array):
        if path == over:
            def write(f):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return write
        return real(path, array)

    monkeypatch.setattr(segment, "image_writer", full_disk_for_the_overlay)
    rc, _, err = run(capsys, "segment", photo, "--box", "5,5,30,30", "--out", mask, "--overlay", over)
    one_line_error(rc, err, "No space left on device", "no file was written")
    assert not mask.exists() and not over.exists() and not leftovers(tmp_path)
    monkeypatch.undo()
    rc, _, err = run(capsys, "segment", photo, "--box", "5,5,30,30", "--out", mask, "--overlay", over)
    assert rc == 0 and mask.is_file() and over.is_file(), err


def test_write_together_puts_back_what_it_renamed_when_a_later_rename_fails(tmp_path, monkeypatch):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    real, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError):
        write_together({a: lambda f: f.write(b"new a"), b: lambda f: f.write(b"new b")})
    monkeypatch.undo()
    assert a.read_text() == "old a" and not b.exists() and not leftovers(tmp_path)
    write_together({a: lambda f: f.write(b"new a"), b: lambda f: f.write(b"new b")})
    assert a.read_text() == "new a" and b.read_text() == "new b" and not leftovers(tmp_path)


def test_a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_umasks(tmp_path):
    old = tmp_path / "old.bin"
    old.write_bytes(b"x")
    old.chmod(0o640)
    write_together({old: lambda f: f.write(b"y"), tmp_path / "new.bin": lambda f: f.write(b"z")})
    umask = os.umask(0)
    os.umask(umask)
    assert old.read_bytes() == b"y" and (old.stat().st_mode & 0o777) == 0o640
    assert ((tmp_path / "new.bin").stat().st_mode & 0o777) == 0o666 & ~umask


def test_export_onnx_replaces_a_file_saying_so_and_keeps_its_mode(tmp_path, capsys, fake_embedded):
    pytest.importorskip("onnx")
    out = tmp_path / "d.onnx"
    rc, stdout, err = run(capsys, "export-onnx", "--out", out)
    assert rc == 0 and stdout.startswith(f"wrote {out}"), err
    out.chmod(0o604)
    rc, stdout, err = run(capsys, "export-onnx", "--out", out, "--force")
    assert rc == 0 and stdout.startswith(f"replaced {out}"), err
    assert (out.stat().st_mode & 0o777) == 0o604 and not leftovers(tmp_path)


def test_folder_problem_names_what_is_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    assert folder_problem(tmp_path / "new" / "deeper") is None and not (tmp_path / "new").exists()
    assert folder_problem(tmp_path / "file" / "x") == f"{tmp_path / 'file'} is a file, not a folder"
    assert "which does not exist" in folder_problem(tmp_path / "dangling" / "x")
    assert "symbolic link loop" in folder_problem(tmp_path / "loop1")
    assert not leftovers(tmp_path)
