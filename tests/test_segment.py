import numpy as np
import pytest
from PIL import Image

from stablesam.cli import main
from stablesam.models.embedded import EXAMPLE_IMAGE


def run(capsys, *args):
    rc = main(["segment", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_segment_example_image(tmp_path, capsys, fake_embedded):
    w, h = Image.open(EXAMPLE_IMAGE).size
    out, ov = tmp_path / "mask.png", tmp_path / "overlay.png"
    rc, stdout, err = run(capsys, EXAMPLE_IMAGE, "--box", "60,20,380,280", "--point", "200,150",
                          "--out", out, "--overlay", ov)
    assert rc == 0, err
    mask = np.array(Image.open(out))
    assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
    assert Image.open(ov).size == (w, h)
    assert "predicted IoU:" in stdout and "alpha =" in stdout
    rc, stdout, _ = run(capsys, EXAMPLE_IMAGE, "--point", "200,150", "--point", "20,20,0", "--multimask",
                        "--model", "tiny-sam", "--out", out, "--force")  # (out exists: replaced with --force)
    assert rc == 0 and "best of 3" in stdout and "plugins off" in stdout


@pytest.mark.parametrize("args,message", [
    (["--box", "60,20,900,280"], "outside the 451x300 image"),
    (["--box", "300,20,60,280"], "inverted or empty box"),
    (["--box", "1,2,3"], "bad --box"),
    (["--point", "500,10"], "outside the 451x300 image"),
    (["--point", "10,10,7"], "label must be 1"),
    ([], "no prompt"),
    (["--box", "60,20,380,280", "--model", "vit_b:/no/such.pth"], "checkpoint not found"),
])
def test_segment_bad_inputs(tmp_path, capsys, fake_embedded, args, message):
    (tmp_path / "o").mkdir()
    out = tmp_path / "o" / "mask.png"
    rc, _, err = run(capsys, EXAMPLE_IMAGE, *args, "--out", out)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "o").iterdir())


def test_segment_unreadable_files(tmp_path, capsys, fake_embedded):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "mask.png"
    rc, _, err = run(capsys, bad, "--box", "1,1,5,5", "--out", out)
    assert rc == 2 and "notes.png: not an image" in err and not out.exists()
    rc, _, err = run(capsys, tmp_path / "missing.jpg", "--box", "1,1,5,5", "--out", out)
    assert rc == 2 and "no such file" in err and not out.exists()


def test_embedded_loader_verifies_checksums(tmp_path, monkeypatch):
    import stablesam.models.embedded as embedded
    from conftest import SMALL_ARCH, build_small_sam
    from stablesam import CheckpointError, StableSam, load_model, save_plugin
    from stablesam.models.files import save_sam_file

    base, plugin = tmp_path / "tiny_sam.pt", tmp_path / "tiny_stable_sam_plugin.pt"
    sam = build_small_sam()
    save_sam_file(sam, SMALL_ARCH, base)
    save_plugin(StableSam(sam), plugin, base_name="tiny-sam")
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{embedded.sha256(base)}  tiny_sam.pt\n{embedded.sha256(plugin)}  tiny_stable_sam_plugin.pt\n")
    monkeypatch.setattr(embedded, "BASE_FILE", base)
    monkeypatch.setattr(embedded, "PLUGIN_FILE", plugin)
    monkeypatch.setattr(embedded, "CHECKSUM_FILE", sums)
    model = load_model(device="cpu")
    assert model.plugins_enabled and model.num_plugin_parameters() == 50_596
    data = bytearray(plugin.read_bytes())
    data[-100] ^= 0xFF
    plugin.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the recorded"):
        load_model(device="cpu")


@pytest.mark.skipif(not __import__("stablesam.models.embedded").models.embedded.embedded_available(),
                    reason="the embedded model is not shipped")
def test_segment_says_when_the_default_plugin_stands_aside(tmp_path, capsys):
    out = tmp_path / "mask.png"
    rc, stdout, err = run(capsys, EXAMPLE_IMAGE, "--point", "200,150", "--out", out)
    assert rc == 0, err
    assert "stood aside: this is SAM's own mask" in stdout and "alpha = 0.000 (deformed)" in stdout
    rc, stdout, err = run(capsys, EXAMPLE_IMAGE, "--box", "60,20,380,280", "--out", out, "--force")
    assert rc == 0 and "stood aside" not in stdout
