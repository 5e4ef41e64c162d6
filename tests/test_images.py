"""The one image loader (`stablesam.data.images.load_image`): every Pillow mode, EXIF, limits, fuzzed bytes."""

import io
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import stablesam
from stablesam.cli import main
from stablesam.data.datasets import DataError, read_image
from stablesam.models.embedded import EXAMPLE_IMAGE
from stablesam.data.images import InputError, LimitError, load_image
from stablesam.backends.predictor import StableSamPredictor

# Starlette >= 1.0 prefers the `httpx2` package for its TestClient; plain httpx works the same.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
H, W = 48, 64
OBJECT = (slice(12, 36), slice(20, 44))
BACKGROUND_BAND = (slice(40, 48), slice(0, 64))
CORNER = (slice(0, 8), slice(0, 8))  # transparent in the images with alpha
X = np.arange(W) / (W - 1)
SCENE = np.broadcast_to(0.2 + 0.2 * X, (H, W)).copy()  # a dim ramp ...
SCENE[OBJECT] = 0.9  # ... and a bright object


def grey8() -> np.ndarray:
    return np.rint(SCENE * 255).astype(np.uint8)


def alpha8() -> np.ndarray:
    a = np.full((H, W), 255, np.uint8)
    a[CORNER] = 0
    return a


def palette_image() -> Image.Image:
    im = Image.frombytes("P", (W, H), grey8().tobytes())
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    return im


def save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def with_alpha(mode: str, path: Path) -> Path:
    base = Image.fromarray(grey8()).convert(mode[:-1] if mode != "PA" else "L")
    if mode == "PA":
        base = palette_image()
    im = base.convert(mode)
    im.putalpha(Image.fromarray(alpha8()))
    return save(im, path)


def transparent_index(path: Path) -> Path:
    g = grey8()
    g[CORNER] = 7  # an index no other pixel uses
    im = Image.frombytes("P", (W, H), g.tobytes())
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    return save(im, path, transparency=7)


def cv2_png(channels: int, path: Path) -> Path:
    v = np.rint(SCENE * 65535).astype(np.uint16)
    planes = [v, v, v] + ([np.where(alpha8() > 0, 65535, 0).astype(np.uint16)] if channels == 4 else [])
    assert cv2.imwrite(str(path), np.dstack(planes))
    return path


def float_tiff(path: Path, values: np.ndarray) -> Path:
    return save(Image.fromarray(values.astype(np.float32)), path)


def nan_corner() -> np.ndarray:
    f = SCENE * 1e-3
    f[CORNER] = np.nan
    return f


# name -> (builder(folder) -> file, the mode Pillow opens it in, has transparent pixels)
CASES = {
    "1": (lambda d: save(Image.fromarray(grey8()).convert("1", dither=Image.Dither.NONE), d / "a.png"), "1", False),
    "L": (lambda d: save(Image.fromarray(grey8()), d / "a.png"), "L", False),
    "LA": (lambda d: with_alpha("LA", d / "a.png"), "LA", True),
    "P": (lambda d: save(palette_image(), d / "a.png"), "P", False),
    "P+transparency": (lambda d: transparent_index(d / "a.png"), "P", True),
    "PA": (lambda d: with_alpha("PA", d / "a.tif"), "PA", True),
    "RGB": (lambda d: save(Image.fromarray(grey8()).convert("RGB"), d / "a.png"), "RGB", False),
    "RGBA": (lambda d: with_alpha("RGBA", d / "a.png"), "RGBA", True),
    "CMYK": (lambda d: save(Image.fromarray(grey8()).convert("RGB").convert("CMYK"), d / "a.tif"), "CMYK", False),
    "YCbCr": (lambda d: save(Image.fromarray(grey8()).convert("RGB").convert("YCbCr"), d / "a.tif"), "YCbCr", False),
    "I;16 (12-bit data)": (lambda d: save(Image.fromarray(np.rint(SCENE * 4095).astype(np.uint16)), d / "a.png"),
                           "I;16", False),
    "I;16B": (lambda d: save(Image.frombytes("I;16B", (W, H), np.rint(SCENE * 65535).astype(">u2").tobytes()),
                             d / "a.tif"), "I;16B", False),
    "I (32-bit)": (lambda d: save(Image.fromarray(np.rint(SCENE * 1e6).astype(np.int32)), d / "a.tif"), "I", False),
    "F (NaN pixels)": (lambda d: float_tiff(d / "a.tif", nan_corner()), "F", False),
    "48-bit RGB": (lambda d: cv2_png(3, d / "a.png"), "RGB", False),
    "64-bit RGBA": (lambda d: cv2_png(4, d / "a.png"), "RGBA", True),
}


def assert_sensible(rgb: np.ndarray, transparent: bool) -> None:
    """The scene as a person would see it: a bright object on a dim ramp, neither saturated
    nor empty; transparent pixels white."""
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert rgb[OBJECT].mean() - rgb[BACKGROUND_BAND].mean() > 60
    assert (rgb == 255).all(axis=2).mean() < 0.5, "saturated"
    assert rgb.std() > 20, "empty"
    if transparent:
        assert (rgb[CORNER] >= 250).all(), "transparent pixels must be composited on white"


@pytest.mark.parametrize("case", list(CASES))
def test_every_image_mode_through_the_loader(tmp_path, case):
    build, mode, transparent = CASES[case]
    path = build(tmp_path)
    with Image.open(path) as im:
        assert im.mode == mode  # the table really covers that mode
    rgb = load_image(path)
    assert_sensible(rgb, transparent)
    assert np.array_equal(read_image(path), rgb)  # datasets use the same loader


@pytest.mark.parametrize("case", list(CASES))
def test_every_image_mode_through_segment(tmp_path, capsys, monkeypatch, fake_embedded, case):
    path = CASES[case][0](tmp_path)
    seen = []
    set_image = StableSamPredictor.set_image
    monkeypatch.setattr(StableSamPredictor, "set_image", lambda self, image, *a: (seen.append(image.copy()),
                                                                                   set_image(self, image, *a))[1])
    out = tmp_path / "mask.png"
    assert main(["segment", str(path), "--box", "18,10,46,38", "--out", str(out)]) == 0, capsys.readouterr().err
    (image,) = seen
    assert_sensible(image, CASES[case][2])
    assert np.array_equal(image, load_image(path))
    assert np.array(Image.open(out)).shape == (H, W)


def test_an_image_with_no_finite_value_is_refused(tmp_path, capsys, fake_embedded):
    path = float_tiff(tmp_path / "nan.tif", np.full((H, W), np.nan))
    with pytest.raises(InputError, match="holds no finite pixel value"):
        load_image(path)
    out = tmp_path / "o" / "mask.png"
    assert main(["segment", str(path), "--box", "1,1,5,5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nan.tif: the image holds no finite pixel value" in err and len(err.splitlines()) == 1
    assert not out.parent.exists()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side,message", [
    ((10_000, 10_000), "the image is 10000x10000 = 100.0 MP; the limit is 25.0 MP (--max-pixels)"),
    ((20_000, 10_000), "the image has more than 179 MP (Pillow's decompression-bomb limit); the limit is 25.0 MP"),
])
def test_pixel_limits_are_one_line_errors_before_decoding(tmp_path, capsys, fake_embedded, side, message):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(*side))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(LimitError) as e:
            load_image(path)
    assert message in str(e.value) and not caught  # Pillow's DecompressionBombWarning kept quiet
    with pytest.raises(DataError, match="bomb.png"):
        read_image(path)
    assert main(["segment", str(path), "--box", "1,1,5,5", "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "m.png").exists()
    assert main(["segment", str(path), "--box", "1,1,5,5", "--max-pixels", "0"]) == 2


def test_a_1x1_image_gets_the_same_answer_from_cli_and_demo(tmp_path, capsys, fake_embedded):
    from starlette.testclient import TestClient

    from stablesam.demo import create_app
    from stablesam.models.spec import build_model, parse_model_spec

    path = save(Image.new("RGB", (1, 1), (200, 10, 10)), tmp_path / "dot.png")
    assert main(["segment", str(path), "--point", "0,0", "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    with TestClient(create_app(build_model(parse_model_spec("tiny-stable-sam"), "cpu"))) as client:
        r = client.post("/api/images", content=path.read_bytes())
    assert r.status_code == 400 and r.json()["error"] == "the image is 1x1 px; it needs at least 2 px per side"
    assert err.strip().endswith(f"{path}: {r.json()['error']}")


def test_exif_orientation_same_mask_from_cli_demo_and_python_api(tmp_path, capsys, fake_embedded):
    """A phone photo stored sideways with EXIF orientation 6 is upright everywhere a person
    gives it (CLI, demo, Python API), and the mask comes out upright; a dataset keeps the
    stored pixels (its masks are drawn on them)."""
    import base64

    from starlette.testclient import TestClient

    from stablesam.demo import create_app
    from stablesam.models.spec import build_model, parse_model_spec

    upright = np.array(Image.open(EXAMPLE_IMAGE).convert("RGB"))  # 451 x 300, no EXIF
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as the sensor wrote it
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    photo = save(stored, tmp_path / "phone.png", exif=exif)
    assert np.array_equal(load_image(photo), upright)
    assert read_image(photo).shape == (451, 300, 3)  # datasets: no rotation
    box = [60, 20, 380, 280]

    out = tmp_path / "cli_mask.png"
    assert main(["segment", str(photo), "--box", ",".join(map(str, box)), "--out", str(out)]) == 0
    cli = np.array(Image.open(out)) > 0

    with TestClient(create_app(build_model(parse_model_spec("tiny-stable-sam"), "cpu"))) as client:
        info = client.post("/api/images", content=photo.read_bytes()).json()
        assert (info["width"], info["height"]) == (451, 300)
        result = client.post("/api/predict", json={"image_id": info["image_id"], "box": box}).json()
    data = base64.b64decode(result["stable_sam"]["mask"].split(",", 1)[1])
    demo = np.array(Image.open(io.BytesIO(data))) > 0

    model = stablesam.load_model(device="cpu")
    predictor = stablesam.StableSamPredictor(model)
    predictor.set_image(stablesam.load_image(photo))
    masks, _, _ = predictor.predict(box=np.array(box), multimask_output=False)
    api = masks[0]

    assert cli.shape == demo.shape == api.shape == (300, 451)
    assert cli.any() and not cli.all()
    assert np.array_equal(cli, api) and np.array_equal(cli, demo)


VALID_PNG = (lambda b: (Image.fromarray(grey8()).save(b, format="PNG"), b.getvalue())[1])(io.BytesIO())
VALID_JPEG = (lambda b: (Image.fromarray(grey8()).save(b, format="JPEG"), b.getvalue())[1])(io.BytesIO())


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([VALID_PNG, VALID_JPEG]),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10_000)))
def test_damaged_files_decode_or_give_one_line_errors(base, flips, cut):
    data = bytearray(base)
    for at, value in flips:
        data[at % len(data)] = value
    data = bytes(data[:cut] if cut is not None else data)
    try:
        rgb = load_image(data)
    except InputError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
