"""`stablesam demo` at the server level: limits, prompts, embedding reuse, wobble, concurrency."""

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from stablesam.cli import main
from stablesam.demo import create_app
from stablesam.models.embedded import EXAMPLES_DIR
from helpers import demo_model, live_server, post, watch_overlap

# Starlette >= 1.0 prefers the `httpx2` package for its TestClient; plain httpx works the same.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
CAT, COFFEE = (EXAMPLES_DIR / "cat.jpg").read_bytes(), (EXAMPLES_DIR / "coffee.jpg").read_bytes()
BOX = [60, 20, 380, 280]  # a loose box around the cat (451 x 300)


def count_encoder_calls(model) -> list:
    calls = []
    encoder = model.sam.image_encoder
    forward = encoder.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    encoder.forward = counted
    return calls


@pytest.fixture
def client(fake_embedded):
    from starlette.testclient import TestClient

    model = demo_model(fake_embedded)
    calls = count_encoder_calls(model)
    app = create_app(model, max_bytes=200_000, max_pixels=1_000_000, max_images=2, model_name="tiny-stable-sam")
    with TestClient(app) as c:
        c.encoder_calls = calls
        yield c


def png(data_url: str) -> np.ndarray:
    head, data = data_url.split(",", 1)
    assert head == "data:image/png;base64"
    im = Image.open(io.BytesIO(base64.b64decode(data)))
    assert im.format == "PNG" and im.mode == "L"
    return np.array(im)


def upload(client, data: bytes = CAT, name: str = "cat.jpg") -> dict:
    r = client.post("/api/images", content=data, headers={"X-Filename": name})
    assert r.status_code == 200, r.text
    return r.json()


def test_page_and_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no web fonts
    for asset in ("/static/demo.js", "/static/demo.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "http" not in r.text
    config = client.get("/api/config").json()
    assert config["examples"] == ["cat.jpg", "coffee.jpg"]
    assert config["max_bytes"] == 200_000 and config["max_pixels"] == 1_000_000
    assert client.get("/api/examples/cat.jpg").content == CAT
    assert client.get("/api/examples/nope.jpg").status_code == 404


def test_embedding_once_per_image_and_both_models(client):
    info = upload(client)
    assert (info["width"], info["height"]) == (451, 300) and not info["stored"]
    assert len(client.encoder_calls) == 1
    shown = Image.open(io.BytesIO(client.get(info["url"]).content))
    assert shown.format == "JPEG" and shown.size == (451, 300)
    prompts = [{"box": BOX}, {"points": [[200, 150, 1]]}, {"box": [100, 50, 300, 250], "points": [[200, 150, 1], [20, 20, 0]]}]
    masks = []
    for prompt in prompts:
        r = client.post("/api/predict", json={"image_id": info["image_id"], **prompt})
        assert r.status_code == 200, r.text
        out = r.json()
        sam, stable = png(out["sam"]["mask"]), png(out["stable_sam"]["mask"])
        assert sam.shape == stable.shape == (300, 451)  # the download: a 0/255 PNG of the image's size
        assert set(np.unique(sam)) <= {0, 255} and set(np.unique(stable)) <= {0, 255}
        assert (sam != stable).any()  # the (perturbed) plugin changes the mask
        a1, a2 = out["stable_sam"]["alpha"]
        assert 0 < a1 < 1 and abs(a1 + a2 - 1) < 1e-3
        assert "alpha" not in out["sam"]
        arrows = np.array(out["stable_sam"]["offsets"]["arrows"])
        # small SAM: 16 x 16 grid over 256 px, the image resized to 256 x 170: 16 x 11 cells lie on it
        assert arrows.shape == (16 * 11, 4) and out["stable_sam"]["offsets"]["stride"] == 1
        assert (arrows[:, 0] < 451).all() and (arrows[:, 1] < 300).all()
        assert out["decoder_ms"] > 0
        masks.append(stable)
    assert (masks[0] != masks[1]).any()
    assert len(client.encoder_calls) == 1  # prompts only run the decoder
    again = upload(client)
    assert again["stored"] and again["image_id"] == info["image_id"]
    assert client.post("/api/examples/cat.jpg").json()["image_id"] == info["image_id"]
    assert len(client.encoder_calls) == 1
    upload(client, COFFEE, "coffee.jpg")
    assert len(client.encoder_calls) == 2


def test_multimask_picks_the_best_of_three(client):
    image_id = upload(client)["image_id"]
    out = client.post("/api/predict", json={"image_id": image_id, "points": [[200, 150, 1]], "multimask": True}).json()
    assert out["sam"]["choice"] in (0, 1, 2) and png(out["sam"]["mask"]).shape == (300, 451)


def test_wobble_heat_maps_and_stability(client):
    image_id = upload(client)["image_id"]
    body = {"image_id": image_id, "box": BOX, "points": [[200, 150, 1]], "k": 6, "scale": 0.3, "seed": 3}
    r = client.post("/api/wobble", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["k"] == 6 and len(out["prompts"]["boxes"]) == 6 and len(out["prompts"]["points"]) == 6
    boxes = np.array(out["prompts"]["boxes"])
    assert len(np.unique(boxes, axis=0)) == 6  # six different noisy boxes ...
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 450).all() and (boxes[:, 3] <= 299).all()  # ... in the image
    levels = {round(255 * i / 6) for i in range(7)}
    for key in ("sam", "stable_sam"):
        heat = png(out[key]["heat"])
        assert heat.shape == (300, 451) and set(np.unique(heat)) <= levels
        assert 0 <= out[key]["stability"] <= 1 and 0 <= out[key]["mean_iou"] <= 1.5
    assert client.post("/api/wobble", json=body).json()["sam"] == out["sam"]  # seeded: same answer
    other = client.post("/api/wobble", json={**body, "seed": 4}).json()
    assert other["prompts"]["boxes"] != out["prompts"]["boxes"]
    clicks = client.post("/api/wobble", json={"image_id": image_id, "points": [[5, 5, 1], [440, 290, 0]], "k": 4}).json()
    pts = np.array(clicks["prompts"]["points"])  # (K, n, 3): jittered clicks, clipped to the image
    assert pts.shape == (4, 2, 3) and clicks["prompts"]["boxes"] is None
    assert (pts[..., 0] >= 0).all() and (pts[..., 0] <= 450).all() and (pts[..., 1] <= 299).all()
    assert (pts[..., 2] == [1, 0]).all() and len(np.unique(pts[:, 0, :2], axis=0)) == 4


def test_wobble_on_a_large_image_works_at_a_bounded_size(client, monkeypatch):
    import stablesam.demo.engine as engine

    image_id = upload(client)["image_id"]
    body = {"image_id": image_id, "box": BOX, "points": [[200, 150, 1]], "k": 5}
    full = client.post("/api/wobble", json=body).json()
    monkeypatch.setattr(engine, "WOBBLE_PIXELS", 40_000)  # the cat (135,300 px) now counts as large
    small = client.post("/api/wobble", json=body).json()
    assert small["prompts"] == full["prompts"]  # the same K prompts, in image pixels
    for key in ("sam", "stable_sam"):
        assert png(small[key]["heat"]).shape == (163, 245)  # 300 x 451 scaled by sqrt(40,000 / 135,300)
        assert abs(small[key]["stability"] - full[key]["stability"]) < 0.05
        assert abs(small[key]["mean_iou"] - full[key]["mean_iou"]) < 1e-3


@pytest.mark.parametrize("data,status,message", [
    (b"", 400, "the file is empty"),
    (b"%PDF-1.4 not an image at all", 400, "not an image"),
    (CAT[:200], 400, "corrupt or truncated"),
    (b"\xff" * 300_000, 413, "the file is 300.0 kB; the limit is 200.0 kB"),
])
def test_bad_uploads(client, data, status, message):
    r = client.post("/api/images", content=data)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert "\n" not in r.json()["error"]
    assert upload(client)["width"] == 451  # still serving


def test_pixel_limit_checked_before_decoding(client):
    big = io.BytesIO()
    Image.new("RGB", (1200, 900)).save(big, format="PNG")  # 1.08 MP, a few kB
    r = client.post("/api/images", content=big.getvalue())
    assert r.status_code == 413 and "1200x900 = 1.1 MP; the limit is 1.0 MP" in r.json()["error"]
    tiny = io.BytesIO()
    Image.new("RGB", (1, 5)).save(tiny, format="PNG")
    assert "at least 2 px" in client.post("/api/images", content=tiny.getvalue()).json()["error"]


def test_truncated_image_is_refused(client):
    r = client.post("/api/images", content=CAT[: len(CAT) // 2])  # the header is intact, the pixels are not
    assert r.status_code == 400 and "truncated" in r.json()["error"]


@pytest.mark.parametrize("prompt,message", [
    ({"box": [60, 20, 900, 280]}, "outside the 451x300 image"),
    ({"box": [300, 20, 60, 280]}, "inverted or empty box"),
    ({"box": [1, 2, 3]}, "box must be"),
    ({"box": [1, 2, "x", 4]}, "finite number"),
    ({"points": [[500, 10, 1]]}, "click 500,10 is outside"),
    ({"points": [[-1, 10, 1]]}, "outside"),
    ({"points": [[10, 10, 7]]}, "label 1 (foreground) or 0"),
    ({"points": [[10, 10, 1]] * 33}, "at most 32"),
    ({}, "no prompt"),
])
def test_bad_prompts(client, prompt, message):
    image_id = upload(client)["image_id"]
    for endpoint in ("/api/predict", "/api/wobble"):
        r = client.post(endpoint, json={"image_id": image_id, **prompt})
        assert r.status_code == 400 and message in r.json()["error"], r.text


def test_bad_requests(client):
    image_id = upload(client)["image_id"]
    r = client.post("/api/predict", json={"image_id": "0" * 32, "box": BOX})
    assert r.status_code == 404 and "unknown image id" in r.json()["error"]
    assert client.get("/api/images/nope.jpg").status_code == 404
    r = client.post("/api/predict", content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert "JSON object" in client.post("/api/predict", json=[1, 2]).json()["error"]
    for wobble, message in (({"k": 1}, "k (noisy prompts)"), ({"k": 65}, "k (noisy prompts)"),
                            ({"scale": 2}, "noise scale"), ({"seed": -1}, "seed")):
        r = client.post("/api/wobble", json={"image_id": image_id, "box": BOX, **wobble})
        assert r.status_code == 400 and message in r.json()["error"]


def test_least_recently_used_image_is_dropped(client):
    a = upload(client)["image_id"]
    b = upload(client, COFFEE, "coffee.jpg")["image_id"]
    upload(client)  # touch a: b is now the oldest
    small = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(small, format="PNG")
    upload(client, small.getvalue(), "red.png")  # max_images=2: b goes
    assert client.post("/api/predict", json={"image_id": a, "box": BOX}).status_code == 200
    assert client.post("/api/predict", json={"image_id": b, "box": BOX}).status_code == 404


def test_concurrent_requests_on_a_real_server(fake_embedded):
    model = demo_model(fake_embedded)
    calls = count_encoder_calls(model)
    overlap = watch_overlap(model.sam.mask_decoder)  # the lock must keep model calls from overlapping
    app = create_app(model)
    with live_server(app) as base:
        cat = post(base, "/api/images", CAT, json_body=False)[1]["image_id"]
        coffee_box = [20, 20, 200, 150]
        coffee = post(base, "/api/images", COFFEE, json_body=False)[1]["image_id"]
        flipped = io.BytesIO()
        Image.open(io.BytesIO(CAT)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped, format="PNG")
        jobs = {
            "cat": ("/api/predict", {"image_id": cat, "box": BOX}),
            "cat-wobble": ("/api/wobble", {"image_id": cat, "box": BOX, "k": 4}),
            "coffee": ("/api/predict", {"image_id": coffee, "box": coffee_box}),
        }
        alone = {name: post(base, path, body) for name, (path, body) in jobs.items()}
        jobs["upload"] = ("/api/images", flipped.getvalue())
        alone["upload"] = (200, {})
        for names in (("cat", "coffee"), ("cat", "cat-wobble"), ("coffee", "upload")):
            barrier, results = threading.Barrier(len(names)), {}

            def run(name):
                path, body = jobs[name]
                barrier.wait()
                results[name] = post(base, path, body, name != "upload")

            threads = [threading.Thread(target=run, args=(n,)) for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            for name in names:
                status, out = results[name]
                assert status == 200, out
                expected = alone[name][1]
                for key in ("sam", "stable_sam"):  # same answers as one at a time
                    if key in out:
                        assert {k: v for k, v in out[key].items() if k != "offsets"} == \
                               {k: v for k, v in expected[key].items() if k != "offsets"}
        status, out = post(base, "/api/predict", {"image_id": cat, "box": [0, 0, 999, 999]})
        assert status == 400 and "outside" in out["error"]
        assert post(base, "/api/predict", {"image_id": coffee, "box": coffee_box})[0] == 200
        assert results["upload"][1]["width"] == 451 and not results["upload"][1]["stored"]
    assert overlap[0] == 1
    assert len(calls) == 3  # cat, coffee and the flipped cat, once each


def test_byte_limit_while_streaming(fake_embedded):
    """A chunked upload (no Content-Length) is cut off at the limit; the server goes on."""
    import http.client

    with live_server(create_app(demo_model(fake_embedded), max_bytes=100_000)) as base:
        port = int(base.rstrip("/").rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/images", body=iter([b"x" * 50_000] * 4), encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 413 and "over the limit of 100.0 kB" in json.loads(r.read())["error"]
        assert post(base, "/api/images", CAT[:20_000], json_body=False)[0] == 400  # under the limit: decoded
        status, out = post(base, "/api/examples/coffee.jpg", b"", json_body=False)
        assert status == 200 and out["width"] == 600


def test_cli_demo_refuses_bad_setups(fake_embedded, capsys):
    for args, message in (
        (["--model", "tiny-sam"], "has no plugin"),
        (["--model", "grabcut"], "grabcut"),
        (["--model", "vit_b:/no/such.pth"], "checkpoint not found"),
        (["--max-bytes", "0"], "must be positive"),
    ):
        assert main(["demo", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["demo", "--port", str(taken.getsockname()[1])]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_cli_demo_serves_the_page(tmp_path):
    """`stablesam demo` for real, in its own process, with a SAM file and a plugin file."""
    from conftest import SMALL_ARCH, build_small_sam, perturb_plugins
    from stablesam import StableSam, save_plugin
    from stablesam.models.files import save_sam_file

    sam_file, plugin = tmp_path / "sam.pt", tmp_path / "plugin.pt"
    model = StableSam(build_small_sam())
    perturb_plugins(model, scale=0.05)
    save_sam_file(model.sam, SMALL_ARCH, sam_file)
    save_plugin(model, plugin, base_name="sam:sam.pt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = f"sam:{sam_file}+plugin={plugin}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "stablesam", "demo", "--model", spec, "--port", str(port),
                             "--max-pixels", "500000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if f"open http://127.0.0.1:{port}/" not in line:
            proc.terminate()
            pytest.fail(f"stablesam demo did not start: {line}{proc.stdout.read()}")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/api/config", timeout=5) as r:
                    config = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "stablesam demo did not come up"
                time.sleep(0.1)
        assert config["model"] == spec and config["max_pixels"] == 500_000
        with urllib.request.urlopen(base + "/", timeout=5) as r:
            assert b"Stable-SAM" in r.read()
        status, info = post(base, "/api/examples/cat.jpg", b"", json_body=False)
        assert status == 200 and info["width"] == 451
        status, out = post(base, "/api/predict", {"image_id": info["image_id"], "box": BOX})
        assert status == 200 and png(out["stable_sam"]["mask"]).shape == (300, 451)
    finally:
        proc.terminate()
        proc.wait(10)
