"""Damaged, hostile or unusual input files are one-line errors (or listed bad files), never a
traceback: plugin and decoder files, transformers folders, multi-frame images, link loops in a
dataset, and --resume with nothing to resume."""

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from stablesam.models.files import PLUGIN_MAX_BYTES, read_plugin, save_decoder
from stablesam.cli import main
from stablesam.data.datasets import FolderDataset
from stablesam.data.images import InputError, load_image
from helpers import make_folder
from helpers import train_args, train_setup  # noqa: F401 (a fixture)
from helpers import one_line_error


def segment(capsys, image, model, *extra):
    rc = main(["segment", str(image), "--box", "5,5,30,30", "--model", model, "--out",
               str(image.parent / "m.png"), *extra])
    return rc, capsys.readouterr().err


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_plugin_and_decoder_files_with_fields_of_the_wrong_type(tmp_path, capsys, fake_embedded, photo):
    good = torch.load(fake_embedded, weights_only=True)
    cases = [("format_version", "1", "format_version is '1', not a whole number"),
             ("base", ["small-test-sam"], "'base' is a list, not a dict"),
             ("config", "rank 32", "'config' is a str, not a dict"),
             ("state_dict", [1, 2], "'state_dict' is a list, not a dict")]
    for key, value, message in cases:
        torch.save({**good, key: value}, tmp_path / "bad.pt")
        rc, err = segment(capsys, photo, f"tiny-sam+plugin={tmp_path / 'bad.pt'}")
        one_line_error(rc, err, "damaged plugin file", message)
    torch.save({**good, "base": {**good["base"], "family": ["sam1"]}}, tmp_path / "bad.pt")
    one_line_error(*segment(capsys, photo, f"tiny-sam+plugin={tmp_path / 'bad.pt'}"), "base family")

    from conftest import build_small_sam

    sam = build_small_sam()
    save_decoder(sam, tmp_path / "dec.pt", "small-test-sam", "x")
    decoder = torch.load(tmp_path / "dec.pt", weights_only=True)
    for key, value in (("base", ["small-test-sam"]), ("format_version", "2"), ("state_dict", "weights")):
        torch.save({**decoder, key: value}, tmp_path / "bad_dec.pt")
        rc, err = segment(capsys, photo, f"tiny-sam+decoder={tmp_path / 'bad_dec.pt'}")
        one_line_error(rc, err, "bad_dec.pt")
    assert not (tmp_path / "m.png").exists()


def test_a_plugin_file_over_the_size_limit_is_refused_unread(tmp_path, capsys, fake_embedded, photo, monkeypatch):
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:
        f.truncate(PLUGIN_MAX_BYTES + 1)  # sparse: no disk used

    def unread(*a, **k):
        raise AssertionError("the file was read")

    monkeypatch.setattr(torch, "load", unread)
    rc, err = segment(capsys, photo, f"tiny-sam+plugin={huge}")
    one_line_error(rc, err, "is too large for a plugin file", "the limit is 64 MB")
    with open(tmp_path / "huge_dec.pt", "wb") as f:
        f.truncate(2**30)
    one_line_error(*segment(capsys, photo, f"tiny-sam+decoder={tmp_path / 'huge_dec.pt'}"), "too large for a decoder")
    monkeypatch.undo()
    assert read_plugin(fake_embedded)["format_version"] == 1  # a real one is far below the limit


class Payload:
    """Pickled, it asks the unpickler to create a folder: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def test_a_transformers_folder_with_a_pickle_payload_or_a_list_config(tmp_path, capsys, photo):
    pytest.importorskip("transformers", reason="hf: folders need the [hf] extra (transformers)")
    from helpers import small_sam_config

    folder, marker = tmp_path / "hf", tmp_path / "code-ran"
    small_sam_config().save_pretrained(folder)
    torch.save({"vision_encoder.x": Payload(marker)}, folder / "pytorch_model.bin")
    rc, err = segment(capsys, photo, f"hf:{folder}")
    one_line_error(rc, err, "refused by torch.load(weights_only=True)", "GLOBAL", "makedirs")
    assert not marker.exists()
    (folder / "config.json").write_text(json.dumps([{"model_type": "sam"}]))
    one_line_error(*segment(capsys, photo, f"hf:{folder}"), "config.json: not a transformers config (a JSON list")


def frames(fmt, n=3):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)) for _ in range(n)]
    buf = io.BytesIO()
    images[0].save(buf, format=fmt, save_all=n > 1, append_images=images[1:])
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "PNG", "WEBP"])
def test_animations_and_multi_page_files_are_refused(tmp_path, capsys, fmt):
    with pytest.raises(InputError, match=f"holds 3 frames \\(an animated or multi-page {fmt}\\)"):
        load_image(frames(fmt))
    assert load_image(frames(fmt, n=1)).shape == (20, 30, 3)  # one frame is an image
    path = tmp_path / f"anim.{fmt.lower()}"
    path.write_bytes(frames(fmt))
    rc = main(["segment", str(path), "--box", "2,2,20,15", "--out", str(tmp_path / "m.png")])
    one_line_error(rc, capsys.readouterr().err, str(path), "3 frames")
    assert not (tmp_path / "m.png").exists()


def test_link_loops_and_dangling_links_in_a_dataset_are_listed_as_bad_files(tmp_path):
    root = make_folder(tmp_path / "toy", n=2)
    (root / "images" / "loop.jpg").symlink_to(root / "images" / "loop.jpg")
    (root / "masks" / "loop.png").symlink_to(root / "masks" / "loop.png")
    (root / "images" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    with pytest.warns(UserWarning):
        ds = FolderDataset(root)
    assert len(ds) == 2
    problems = "\n".join(ds.problems)
    assert "loop.jpg is a symbolic link loop" in problems and "loop.png is a symbolic link loop" in problems
    assert "gone.jpg is a link to" in problems and "which does not exist" in problems


def test_resume_without_a_checkpoint_warns_and_starts_a_new_run(train_setup, capsys):  # noqa: F811
    sam_file, data, tmp = train_setup
    out = tmp / "run"
    assert main(train_args(sam_file, data, out, "--steps", 2, "--batch-size", 2, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"warning: --resume: {out} holds no checkpoint.pt; starting a new run from step 0" in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    assert main(train_args(sam_file, data, out, "--steps", 2, "--batch-size", 2, "--resume")) == 0  # finished: resumes
    assert "warning" not in capsys.readouterr().err
    (tmp / "odd" / "checkpoint.pt").mkdir(parents=True)
    rc = main(train_args(sam_file, data, tmp / "odd", "--steps", 2, "--resume"))
    one_line_error(rc, capsys.readouterr().err, "checkpoint.pt is not a file")
