"""Fuzzing the prompt parsers, `stablesam segment` and the demo's JSON API with malformed,
huge, non-finite and wrongly typed values: a one-line error (exit 2 / HTTP 4xx), never a
traceback, nothing left behind, and the server keeps answering."""

import io
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stablesam.cli import main
from stablesam.data.images import InputError
from stablesam.prompts.generation import parse_prompts
from stablesam.training.rts import RtsMixture
from stablesam.commands.segment import parse_box, parse_point

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SIZE = (48, 64)  # H, W of the fuzzed images
COUNTER = itertools.count()

number_texts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**40, 10**40).map(str),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e999", "-0", "", " ", "0x10", "1_0", "٣", "1e-400",
                     "10", "20", "5", "0", "1", "47", "63", "nan(1)", "--5", "+7", "3."]),
    st.text(max_size=6),
)
number_lists = st.lists(number_texts, min_size=0, max_size=6).map(",".join)


@FUZZ
@given(box=number_lists, point=number_lists, prompts=st.text(max_size=30), mixture=st.text(max_size=30))
def test_prompt_parsers_return_finite_values_or_raise_one_line(box, point, prompts, mixture):
    for parse, text in ((parse_box, box), (parse_point, point)):
        try:
            value = parse(text, SIZE)
        except InputError as e:
            assert "\n" not in str(e)
        else:
            numbers = np.asarray(value[0] if parse is parse_point else value, float)
            assert np.isfinite(numbers).all()
    for parse, text in ((parse_prompts, prompts), (RtsMixture.parse, mixture)):
        try:
            parse(text)
        except ValueError as e:
            assert "\n" not in str(e)


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)).save(path)
    return path


@FUZZ
@given(box=st.one_of(st.none(), number_lists), points=st.lists(number_lists, max_size=2))
def test_segment_cli_fuzzed_prompts(tmp_path, capsys, fake_embedded, image_file, box, points):
    out_dir = tmp_path / f"out{next(COUNTER)}"
    out_dir.mkdir()
    args = ["segment", str(image_file), "--out", str(out_dir / "mask.png")]
    args += [f"--box={box}"] if box is not None else []
    args += [f"--point={p}" for p in points]
    before = image_file.read_bytes()
    rc = main(args)
    captured = capsys.readouterr()
    assert rc in (0, 2), captured.err
    if rc == 2:
        assert captured.err.startswith("stablesam segment: error: ") and len(captured.err.splitlines()) == 1
        assert not list(out_dir.iterdir())
    else:
        assert [p.name for p in out_dir.iterdir()] == ["mask.png"]
    assert image_file.read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--box", "-5,0,9,9"], "outside the 64x48 image"),  # read as --box=-5,0,9,9
    (["--point", "-1,3"], "outside the 64x48 image"),
    (["--box", "-inf,0,9,9"], "must be a finite number"),
    (["--box", "nan,0,9,9"], "must be a finite number"),
    (["--point", "3,3,nan"], "must be a finite number"),
    (["--point", "3,3,inf"], "must be a finite number"),
    (["--point", "3,3,-1"], "label must be 1"),
])
def test_negative_and_non_finite_cli_values(tmp_path, capsys, fake_embedded, image_file, args, message):
    assert main(["segment", str(image_file), *args, "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "m.png").exists()


json_leaves = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10**400, 10**400), st.integers(-5, 70), st.text(max_size=8),
)
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=4)), max_leaves=10)
coordinates = st.one_of(json_leaves, st.integers(0, 63), st.floats(0, 47))
prompt_fields = {
    "box": st.one_of(json_values, st.lists(coordinates, min_size=4, max_size=4)),
    "points": st.one_of(json_values, st.lists(st.lists(coordinates, min_size=2, max_size=4), max_size=4)),
    "multimask": st.one_of(st.booleans(), json_values),
    "k": st.one_of(st.integers(-3, 70), json_leaves), "scale": st.one_of(st.floats(-1, 2), json_leaves),
    "seed": json_leaves,
}


@pytest.fixture
def demo(fake_embedded):
    from starlette.testclient import TestClient

    from stablesam.demo import create_app
    from stablesam.models.spec import build_model, parse_model_spec

    app = create_app(build_model(parse_model_spec("tiny-stable-sam"), "cpu"), max_bytes=50_000, max_pixels=100_000)
    small = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (*SIZE, 3), dtype=np.uint8)).save(small, format="PNG")
    with TestClient(app) as client:
        r = client.post("/api/images", content=small.getvalue())
        assert r.status_code == 200
        client.image_id = r.json()["image_id"]
        yield client


def assert_answer(r) -> None:
    """200, or a 4xx whose body is {"error": one line}: never a 500."""
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    if r.status_code != 200:
        error = r.json()["error"]
        assert isinstance(error, str) and error and "\n" not in error and "Traceback" not in error


@FUZZ
@given(body=st.fixed_dictionaries({}, optional={**prompt_fields, "image_id": st.one_of(st.just("ID"), json_values)}),
       endpoint=st.sampled_from(["/api/predict", "/api/wobble"]))
def test_demo_json_api_fuzzed_bodies(demo, body, endpoint):
    if body.get("image_id") == "ID":
        body["image_id"] = demo.image_id
    r = demo.post(endpoint, content=json.dumps(body, allow_nan=True).encode(),
                  headers={"Content-Type": "application/json"})
    assert_answer(r)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                     st.integers(1, 60_000).map(lambda n: b"[" * n)),
       endpoint=st.sampled_from(["/api/predict", "/api/wobble", "/api/images"]))
def test_demo_fuzzed_raw_bodies(demo, raw, endpoint):
    assert_answer(demo.post(endpoint, content=raw))


def test_demo_api_corners_and_the_server_keeps_answering(demo):
    def predict(**body):
        return demo.post("/api/predict", content=json.dumps({"image_id": demo.image_id, **body}).encode())

    r = predict(box=[10**400, 2, 30, 40])
    assert r.status_code == 400 and "finite number" in r.json()["error"]
    r = predict(points=[[10**400, 3, 1]])
    assert r.status_code == 400 and "finite number" in r.json()["error"]
    r = predict(box=[2, 2, 30, 40], multimask="no")
    assert r.status_code == 400 and "multimask must be true or false" in r.json()["error"]
    r = predict(box=[math.nan, 2, 30, 40])
    assert r.status_code == 400
    assert demo.post("/api/predict", content=b"[" * 50_000).status_code == 400  # nested too deep
    r = demo.post("/api/predict", content=b"x" * 64_001)
    assert r.status_code == 413 and r.json()["error"] == "the request is 64,001 bytes; the limit is 64,000 bytes"
    r = demo.post("/api/images", content=b"x" * 60_000)
    assert r.status_code == 413 and "the file is 60.0 kB; the limit is 50.0 kB" in r.json()["error"]
    ok = predict(box=[2, 2, 30, 40], multimask=True)
    assert ok.status_code == 200 and 0 <= ok.json()["stable_sam"]["choice"] <= 2
