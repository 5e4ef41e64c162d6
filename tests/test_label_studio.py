"""`stablesam label-studio`: the ML-backend protocol, on request bodies recorded from a real
Label Studio 1.23.2 (tests/data/label_studio/), with the embedded Stable-SAM and images served
by a local HTTP server that plays Label Studio's file endpoints (tokens included)."""

import copy
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

EXTRA = 'needs the [label-studio] extra: pip install -e ".[label-studio]"'
pytest.importorskip("label_studio_sdk", reason=EXTRA)
pytest.importorskip("httpx", reason=EXTRA)

from label_studio_sdk.converter.brush import decode_rle  # noqa: E402

from stablesam.cli import main  # noqa: E402
from stablesam.models.embedded import EXAMPLES_DIR  # noqa: E402
from stablesam.data.images import load_image  # noqa: E402
from stablesam.label_studio import ImageFetcher, LabelStudioEngine, create_app, model_version  # noqa: E402
from stablesam.models.spec import build_model, parse_model_spec  # noqa: E402
from stablesam.backends.predictor import StableSamPredictor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
RECORDED = Path(__file__).parent / "data" / "label_studio"
COFFEE = EXAMPLES_DIR / "coffee.jpg"  # 600 x 400
CUP_BOX = (170, 15, 410, 305)
LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"
PERSONAL_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"  # a JWT's shape
ACCESS_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.YWNjZXNz"
CONFIG_POLYGON = """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="outline" toName="image"><Label value="Cup"/></PolygonLabels>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="Cup"/></RectangleLabels>
</View>"""


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


class Files(BaseHTTPRequestHandler):
    """Plays Label Studio's file endpoints: /data/upload/... needs `Token LEGACY` or `Bearer
    ACCESS` (from /api/token/refresh/ with the personal token); /open/NAME needs nothing."""

    requests: list = []

    def log_message(self, *args):  # quiet
        pass

    def send(self, status: int, body: bytes, kind: str = "application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/token/refresh/" and body.get("refresh") == PERSONAL_TOKEN:
            return self.send(200, json.dumps({"access": ACCESS_TOKEN}).encode(), "application/json")
        self.send(401, b'{"detail": "token not valid"}', "application/json")

    def do_GET(self):
        Files.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1].split("-", 1)[-1]
        if self.path.startswith("/data/upload/"):
            if self.headers.get("Authorization") not in (f"Token {LEGACY_TOKEN}", f"Bearer {ACCESS_TOKEN}"):
                return self.send(401, b'{"detail": "Authentication credentials were not provided."}')
        elif not self.path.startswith("/open/"):
            return self.send(404, b"not found")
        if name == "text.jpg":
            return self.send(200, b"this is not an image")
        if name == "big.jpg":
            return self.send(200, b"\xff" * 300_000)
        path = EXAMPLES_DIR / name
        if not path.is_file():
            return self.send(404, b"not found")
        self.send(200, path.read_bytes(), "image/jpeg")


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def model():
    return build_model(parse_model_spec("tiny-stable-sam"), "cpu")


def make_engine(model, files: str, token: str = LEGACY_TOKEN, **kwargs) -> LabelStudioEngine:
    fetcher = ImageFetcher(files, token, kwargs.pop("allow_dirs", ()), kwargs.pop("max_bytes", 200_000))
    return LabelStudioEngine(model, model_version(parse_model_spec("tiny-stable-sam")), fetcher, **kwargs)


@contextmanager
def client_for(engine: LabelStudioEngine):
    from starlette.testclient import TestClient

    with TestClient(create_app(engine)) as c:
        yield c


@pytest.fixture
def engine(model, files):
    return make_engine(model, files)


@pytest.fixture
def client(engine):
    with client_for(engine) as c:
        yield c


def decode(result: dict) -> np.ndarray:
    """A BrushLabels result -> (H, W) bool mask, with label-studio-sdk's own decoder."""
    h, w = result["original_height"], result["original_width"]
    return decode_rle(result["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 127


def segment_mask(tmp_path: Path, box) -> np.ndarray:
    """What `stablesam segment` writes for this box on the coffee photo."""
    out = tmp_path / "segment.png"
    assert main(["segment", str(COFFEE), "--box", ",".join(map(str, box)), "--out", str(out)]) == 0
    return np.array(Image.open(out)) > 127


def interactive(region_or_regions, task=None) -> dict:
    """The recorded interactive request with other regions in context.result."""
    body = copy.deepcopy(recorded("predict_interactive.json"))
    regions = region_or_regions if isinstance(region_or_regions, list) else [region_or_regions]
    body["params"]["context"]["result"] = regions
    if task is not None:
        body["tasks"] = [task]
    return body


def box_region(box, label: str = "Cup", size=(600, 400), **extra) -> dict:
    w, h = size
    x0, y0, x1, y1 = box
    value = {"x": x0 * 100 / w, "y": y0 * 100 / h, "width": (x1 - x0) * 100 / w, "height": (y1 - y0) * 100 / h,
             "rotation": 0, "rectanglelabels": [label]}
    value.update(extra.pop("value", {}))
    return {"id": "r1", "from_name": "box", "to_name": "image", "type": "rectanglelabels", "origin": "manual",
            "original_width": w, "original_height": h, "image_rotation": 0, "value": value, **extra}


def click_region(x, y, label: str = "Cup", size=(600, 400), **extra) -> dict:
    w, h = size
    return {"id": f"k{x}{y}", "from_name": "click", "to_name": "image", "type": "keypointlabels",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": x * 100 / w, "y": y * 100 / h, "width": 0.5, "keypointlabels": [label]}, **extra}


# --- the protocol ---------------------------------------------------------------------------

def test_health_and_setup_answer_like_a_label_studio_backend(client):
    for path in ("/", "/health"):
        r = client.get(path)
        assert r.status_code == 200 and r.json()["status"] == "UP"
    version = r.json()["model_version"]
    assert version.startswith("tiny-stable-sam@") and len(version.split("@")[1]) == 12
    r = client.post("/setup", json=recorded("setup.json"))
    assert r.status_code == 200 and r.json() == {"model_version": version}
    assert client.get("/versions").json() == {"versions": [version]}
    r = client.post("/webhook", json=recorded("webhook_tasks_created.json"))
    assert r.status_code == 200 and r.json()["training"] is False and r.json()["action"] == "TASKS_CREATED"


def test_interactive_box_gives_the_mask_segment_gives(client, engine, tmp_path):
    """The request Label Studio sent for a box on the uploaded coffee photo: the BrushLabels RLE
    decodes to exactly `stablesam segment`'s mask, its score is the predicted IoU."""
    body = recorded("predict_interactive.json")
    assert body["tasks"][0]["data"]["image"].startswith("/data/upload/")  # fetched with the token
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    (prediction,) = r.json()["results"]
    (region,) = prediction["result"]
    assert region["type"] == "brushlabels" and region["from_name"] == "mask" and region["to_name"] == "image"
    assert region["value"]["brushlabels"] == ["Cup"] and region["value"]["format"] == "rle"
    assert (region["original_width"], region["original_height"]) == (600, 400)
    mask = decode(region)
    assert np.array_equal(mask, segment_mask(tmp_path, CUP_BOX))
    predictor = StableSamPredictor(engine.model)
    predictor.set_image(load_image(COFFEE))
    _, scores, _ = predictor.predict(box=np.array(CUP_BOX), multimask_output=False)
    assert region["score"] == pytest.approx(float(scores[0]), abs=1e-4) == prediction["score"]
    assert prediction["model_version"] == engine.model_version


def test_requests_of_the_labelling_page(client, engine):
    """What Label Studio sent when its page (headless Chromium, Auto-Annotation on) had a box
    dragged with the smart rectangle tool, and when it opened a task without boxes."""
    body = recorded("predict_interactive_browser.json")
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    (region,) = r.json()["results"][0]["result"]
    v = body["params"]["context"]["result"][0]["value"]
    x1, y1 = v["x"] + v["width"], v["y"] + v["height"]
    box = np.array([v["x"] * 600 / 100, v["y"] * 400 / 100, x1 * 600 / 100, y1 * 400 / 100])  # as regions.py
    predictor = StableSamPredictor(engine.model)
    predictor.set_image(load_image(COFFEE))
    masks, _, _ = predictor.predict(box=box, multimask_output=False)
    assert np.array_equal(decode(region), masks[0])
    r = client.post("/predict", json=recorded("predict_task_opened.json"))
    assert r.status_code == 200 and r.json()["results"] == []  # no prediction: Label Studio stores none


def test_answers_match_the_recorded_label_studio_run(client):
    """Label Studio accepted these answers (tests/data/label_studio/*answer*.json, from the
    embedded model of the time): today's have the same form (their masks are checked above)."""
    answer = recorded("predict_interactive.answer.json")
    r = client.post("/predict", json=recorded("predict_interactive.json")).json()
    keys = lambda d: sorted(d)  # noqa: E731
    assert keys(r) == keys(answer) and keys(r["results"][0]) == keys(answer["results"][0])
    assert keys(r["results"][0]["result"][0]) == keys(answer["results"][0]["result"][0])
    assert keys(r["results"][0]["result"][0]["value"]) == keys(answer["results"][0]["result"][0]["value"])
    assert decode(answer["results"][0]["result"][0]).shape == decode(r["results"][0]["result"][0]).shape


def test_clicks_positive_and_negative(client, engine):
    """A KeyPointLabels click with the negative label (or is_positive: false, Label Studio's
    Alt-click) is a background click; the others are foreground; a lone click is SAM's best of 3."""
    one = client.post("/predict", json=interactive(click_region(290, 160))).json()["results"][0]["result"][0]
    assert one["value"]["brushlabels"] == ["Cup"] and decode(one)[160, 290]
    neg_label = interactive([click_region(290, 160), click_region(520, 60, "Background")])
    neg_flag = interactive([click_region(290, 160), click_region(520, 60, "Cup", is_positive=False)])
    a = client.post("/predict", json=neg_label).json()["results"][0]["result"][0]
    b = client.post("/predict", json=neg_flag).json()["results"][0]["result"][0]
    assert a["value"]["brushlabels"] == ["Cup"] and np.array_equal(decode(a), decode(b))
    predictor = StableSamPredictor(engine.model)
    predictor.set_image(load_image(COFFEE))
    masks, _, _ = predictor.predict(point_coords=np.array([[290.0, 160.0], [520.0, 60.0]]),
                                    point_labels=np.array([1, 0]), multimask_output=False)
    assert np.array_equal(decode(a), masks[0])
    both = interactive([box_region(CUP_BOX), click_region(290, 160), click_region(520, 60, "Background")])
    r = client.post("/predict", json=both)
    assert r.status_code == 200 and len(r.json()["results"][0]["result"]) == 1


def test_negative_label_is_configurable(model, files):
    engine = make_engine(model, files, negative_label="Not cup")
    with client_for(engine) as c:
        body = interactive([click_region(290, 160), click_region(520, 60, "Not cup")])
        assert c.post("/predict", json=body).status_code == 200
        only_background = interactive([click_region(520, 60, "Not cup")])
        r = c.post("/predict", json=only_background)
        assert r.status_code == 400 and "only background clicks" in r.json()["error"]


def test_polygon_labels_when_the_config_has_them(client, files):
    body = interactive(box_region(CUP_BOX))
    body["label_config"] = CONFIG_POLYGON
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"][0]["result"]
    assert results and all(x["type"] == "polygonlabels" and x["from_name"] == "outline" for x in results)
    drawn = Image.new("L", (600, 400))
    from PIL import ImageDraw

    for x in results:
        assert x["value"]["closed"] and x["value"]["polygonlabels"] == ["Cup"]
        ImageDraw.Draw(drawn).polygon([(px * 6 - 0.5, py * 4 - 0.5) for px, py in x["value"]["points"]], fill=255)
    brush = client.post("/predict", json=interactive(box_region(CUP_BOX))).json()["results"][0]["result"][0]
    a, b = np.array(drawn) > 0, decode(brush)
    assert (a & b).sum() / (a | b).sum() > 0.9
    both = CONFIG_POLYGON.replace("</View>", '<BrushLabels name="mask" toName="image"><Label value="Cup"/></BrushLabels></View>')
    body["label_config"] = both
    types = {x["type"] for x in client.post("/predict", json=body).json()["results"][0]["result"]}
    assert types == {"polygonlabels", "brushlabels"}


def test_pre_annotation_masks_the_boxes_a_task_holds(client, engine, tmp_path):
    """The request Label Studio sent to retrieve predictions for a task holding a detector's box
    (a prediction) and a person's box (an annotation): one mask per box, no click."""
    body = recorded("predict_preannotation.json")
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(body["tasks"])
    regions = results[0]["result"]
    boxes = [x["value"] for t in ("predictions", "annotations") for item in body["tasks"][0][t]
             for x in item["result"] if x["type"] == "rectanglelabels"]
    assert len(regions) == len(boxes) >= 2 and all(x["type"] == "brushlabels" for x in regions)
    assert np.array_equal(decode(regions[0]), segment_mask(tmp_path, CUP_BOX))
    task = copy.deepcopy(body["tasks"][0])
    task["predictions"].append(copy.deepcopy(task["predictions"][0]))  # the same box twice: one mask
    task2 = {**copy.deepcopy(task), "annotations": [], "predictions": []}  # nothing to mask
    r = client.post("/predict", json={**body, "tasks": [task, task2]}).json()["results"]
    assert len(r[0]["result"]) == len(boxes) and r[1]["result"] == []


def test_one_encoder_run_per_image_then_decoder_only(model, files):
    engine = make_engine(model, files, max_images=1)
    with client_for(engine) as c:
        for box in (CUP_BOX, (150, 10, 430, 320), (200, 40, 380, 280)):
            assert c.post("/predict", json=interactive(box_region(box))).status_code == 200
        assert engine.encoder_calls == 1
        cat = {"id": 2, "data": {"image": f"{files}/open/cat.jpg"}, "annotations": [], "predictions": []}
        assert c.post("/predict", json=interactive(box_region((60, 20, 380, 280), size=(451, 300)), cat)).status_code == 200
        assert c.post("/predict", json=interactive(box_region(CUP_BOX))).status_code == 200
        assert engine.encoder_calls == 3  # the store holds one image: coffee was dropped for the cat


def test_personal_access_token_is_exchanged(model, files):
    Files.requests.clear()
    engine = make_engine(model, files, token=PERSONAL_TOKEN)
    with client_for(engine) as c:
        assert c.post("/predict", json=recorded("predict_interactive.json")).status_code == 200
    assert engine.fetcher._access == ACCESS_TOKEN


def test_local_paths_only_under_allow_dir(model, files, tmp_path):
    allowed = tmp_path / "images"
    allowed.mkdir()
    (allowed / "coffee.jpg").write_bytes(COFFEE.read_bytes())
    (tmp_path / "secret.jpg").write_bytes(COFFEE.read_bytes())
    (allowed / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    engine = make_engine(model, files, allow_dirs=[str(allowed)])
    task = lambda path: {"id": 3, "data": {"image": str(path)}}  # noqa: E731
    with client_for(engine) as c:
        r = c.post("/predict", json=interactive(box_region(CUP_BOX), task(allowed / "coffee.jpg")))
        assert r.status_code == 200, r.text
        r = c.post("/predict", json=interactive(box_region(CUP_BOX), task(f"file://{allowed / 'coffee.jpg'}")))
        assert r.status_code == 200, r.text
        for path in (tmp_path / "secret.jpg", allowed / "link.jpg", allowed / ".." / "secret.jpg", "/etc/passwd"):
            r = c.post("/predict", json=interactive(box_region(CUP_BOX), task(path)))
            assert r.status_code == 403 and "not under an allowed folder" in r.json()["error"], r.text
    with client_for(make_engine(model, files)) as c:  # no --allow-dir: no local file at all
        r = c.post("/predict", json=interactive(box_region(CUP_BOX), task(allowed / "coffee.jpg")))
        assert r.status_code == 403 and "none given" in r.json()["error"]


# --- bad input: a 4xx with one line, and the server goes on ---------------------------------

BAD = [
    ("rotated box", lambda b: b["params"]["context"]["result"][0]["value"].update(rotation=30), 400, "rotated box"),
    ("unknown region type", lambda b: b["params"]["context"]["result"][0].update(type="ellipselabels"), 400,
     "'ellipselabels' is not a prompt"),
    ("region without value", lambda b: b["params"]["context"]["result"][0].pop("value"), 400, "'value' object"),
    ("NaN coordinate", lambda b: b["params"]["context"]["result"][0]["value"].update(x="NaN"), 400, "finite number"),
    ("box outside the image", lambda b: b["params"]["context"]["result"][0]["value"].update(x=150), 400,
     "not a percentage"),
    ("two tasks with a context", lambda b: b["tasks"].append(b["tasks"][0]), 400, "takes one task"),
    ("tasks not a list", lambda b: b.update(tasks={"id": 1}), 400, "tasks must be a list"),
    ("no labelling config", lambda b: b.pop("label_config"), 400, "no labelling config"),
    ("config without mask tag", lambda b: b.update(label_config='<View><Image name="image" value="$image"/></View>'),
     400, "no BrushLabels or PolygonLabels"),
    ("broken config", lambda b: b.update(label_config="<View><Image"), 400, "cannot be read"),
    ("image key missing", lambda b: b["tasks"][0].update(data={"picture": "x.jpg"}), 400, "has no 'image'"),
    ("image not found", lambda b: b["tasks"][0].update(data={"image": "/data/upload/1/missing.jpg"}), 400,
     "HTTP 404"),
    ("not an image", lambda b: b["tasks"][0].update(data={"image": "/data/upload/1/text.jpg"}), 400,
     "not an image"),
    ("too many bytes", lambda b: b["tasks"][0].update(data={"image": "/data/upload/1/big.jpg"}), 413,
     "limit is 200.0 kB"),
    ("cloud URI", lambda b: b["tasks"][0].update(data={"image": "s3://bucket/x.jpg"}), 400, "unsupported image URL"),
    ("unreachable host", lambda b: b["tasks"][0].update(data={"image": "http://127.0.0.1:9/x.jpg"}), 400,
     "cannot be fetched"),
    ("context not an object", lambda b: b["params"].update(context=[1]), 400, "context must be an object"),
]


@pytest.mark.parametrize("what,change,status,message", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_one_line_and_the_server_goes_on(client, what, change, status, message):
    body = copy.deepcopy(recorded("predict_interactive.json"))
    change(body)
    r = client.post("/predict", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error and "\n" not in error
    assert client.post("/predict", json=recorded("predict_interactive.json")).status_code == 200


def test_bad_bodies(client, model, files):
    for raw in (b"not json", b"[1, 2]", b"[" * 100_000):
        r = client.post("/predict", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "\n" not in r.json()["error"]
    assert client.post("/webhook", content=b"{}").status_code == 400
    assert client.post("/setup", json={"schema": "<View/>"}).status_code == 400
    with client_for(make_engine(model, files, max_pixels=100_000)) as c:
        r = c.post("/predict", json=recorded("predict_interactive.json"))
        assert r.status_code == 413 and "--max-pixels" in r.json()["error"]
    with client_for(make_engine(model, "", token="")) as c:  # no LABEL_STUDIO_URL
        r = c.post("/predict", json=recorded("predict_interactive.json"))
        assert r.status_code == 400 and "LABEL_STUDIO_URL" in r.json()["error"]
    with client_for(make_engine(model, files, token="wrong")) as c:
        r = c.post("/predict", json=recorded("predict_interactive.json"))
        assert r.status_code == 400 and "HTTP 401" in r.json()["error"]


def test_concurrent_requests_on_a_real_server(model, files):
    """Many requests at once over HTTP: each answer equals the same request made alone, and the
    lock keeps model calls from overlapping."""
    from helpers import live_server, post, watch_overlap

    engine = make_engine(model, files)
    overlap = watch_overlap(model.sam.mask_decoder)
    try:
        with live_server(create_app(engine)) as base:
            cat = {"id": 2, "data": {"image": f"{files}/open/cat.jpg"}}
            jobs = [interactive(box_region(b)) for b in (CUP_BOX, (150, 10, 430, 320), (200, 40, 380, 280))]
            jobs += [interactive(box_region((60, 20, 380, 280), size=(451, 300)), cat),
                     interactive([click_region(290, 160), click_region(520, 60, "Background")])]
            alone = [post(base, "/predict", body) for body in jobs]
            with ThreadPoolExecutor(8) as pool:
                together = list(pool.map(lambda body: post(base, "/predict", body), jobs * 3))
            with urllib.request.urlopen(base + "health", timeout=30) as r:
                assert json.loads(r.read())["status"] == "UP"
    finally:
        del model.sam.mask_decoder.forward  # the class's own forward again
    assert all(status == 200 for status, _ in alone + together)
    rle = lambda answer: [x["value"]["rle"] for x in answer[1]["results"][0]["result"]]  # noqa: E731
    assert [rle(a) for a in together] == [rle(a) for a in alone] * 3
    assert overlap[0] == 1 and engine.encoder_calls == 2


def test_cli_refuses_bad_setups(capsys):
    for args, message in (
        (["--allow-dir", "/no/such/folder"], "not a folder"),
        (["--model", "grabcut"], "grabcut"),
        (["--model", "vit_b:/no/such.pth"], "checkpoint not found"),
        (["--max-images", "0"], "must be positive"),
    ):
        assert main(["label-studio", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_cli_serves_label_studio_in_its_own_process(files):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LABEL_STUDIO_URL": files, "LABEL_STUDIO_API_KEY": LEGACY_TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "stablesam", "label-studio", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert f"connect http://127.0.0.1:{port}/ in Label Studio" in line, line + proc.stdout.read()
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/health", timeout=30) as r:
            assert json.loads(r.read())["status"] == "UP"
        request = urllib.request.Request(base + "/predict", data=json.dumps(recorded("predict_interactive.json")).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=120) as r:
            assert json.loads(r.read())["results"][0]["result"][0]["type"] == "brushlabels"
    finally:
        proc.terminate()
        proc.wait(30)
