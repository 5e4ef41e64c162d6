"""`stablesam label-studio` against a real Label Studio (slow: a few minutes, most of them
Label Studio's first start).

The test starts Label Studio (SQLite and its data under the test's tmp path, 127.0.0.1 only),
creates a project with a BrushLabels + RectangleLabels + KeyPointLabels config through
label-studio-sdk, uploads a shipped example photo, connects the backend (served in this process
on a free port, fetching the upload with a personal access token), then:

- asks Label Studio for an interactive prediction with a box: the mask it hands to the page
  decodes to the mask `stablesam segment` gives for the same box;
- imports a task holding a detector's box (a prediction) and a person's box (an annotation)
  and has Label Studio retrieve predictions: the stored prediction holds one mask per box,
  each `stablesam segment`'s for that box.

Label Studio is found as STABLESAM_LABEL_STUDIO (the path of its `label-studio` command), else
beside this Python, else in .venv-label-studio/ at the repository's root, else on PATH; it may
live in a virtual environment of its own (`pip install label-studio==1.23.2 "sentry-sdk<3"`: with
sentry-sdk 3, which pip resolves otherwise, every `label-studio` command fails). Set
STABLESAM_RECORD_LABEL_STUDIO=DIR to write the requests Label Studio sent and the answers
(tests/data/label_studio/ holds such a recording, replayed by tests/test_label_studio.py).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
LEGACY_TOKEN = "5ab1e5a3c0ffee00d15ea5edba5eba11deadbeef"
START_TIMEOUT_S = 900  # a first start migrates a new SQLite database (about a minute on a quiet 2-core CPU)
CUP_BOX = (170, 15, 410, 305)  # a tight box: a person's
DETECTOR_BOX = (150, 10, 430, 320)  # a looser one: a detector's
CONFIG = (REPO / "tests" / "data" / "label_studio" / "cup_config.xml").read_text()  # also the screenshot's


def label_studio_command() -> Optional[str]:
    candidates = [os.environ.get("STABLESAM_LABEL_STUDIO"), str(Path(sys.executable).parent / "label-studio"),
                  str(REPO / ".venv-label-studio" / "bin" / "label-studio"), shutil.which("label-studio")]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


COMMAND = label_studio_command()
if COMMAND is None:
    pytest.skip("needs Label Studio: python3 -m venv .venv-label-studio && .venv-label-studio/bin/pip install "
                "label-studio==1.23.2 \"sentry-sdk<3\" (or STABLESAM_LABEL_STUDIO=its label-studio command)",
                allow_module_level=True)
EXTRA = 'needs the [label-studio] extra: pip install -e ".[label-studio]"'
pytest.importorskip("label_studio_sdk", reason=EXTRA)
httpx = pytest.importorskip("httpx", reason=EXTRA)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory) -> Iterator[str]:
    """A real Label Studio on 127.0.0.1 (its own process group, stopped at the end)."""
    root = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(root / "data"), "DJANGO_DB": "sqlite",
           # the backend runs on this machine: Label Studio refuses local addresses unless told
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false", "OMP_NUM_THREADS": "1"}
    log = open(root / "label-studio.log", "w")
    proc = subprocess.Popen(
        [COMMAND, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(root / "data"), "--username", "annotator@example.com", "--password", "stablesam-test",
         "--user-token", LEGACY_TOKEN, "--enable-legacy-api-token"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(base + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (root / "label-studio.log").read_text()[-3000:]
                pytest.fail(f"Label Studio did not start ({COMMAND}):\n{tail}")
            time.sleep(1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


class Recorder:
    """ASGI middleware writing each request body and answer to DIR/NNN-PATH.{req,answer}.json."""

    def __init__(self, app, folder: Path):
        self.app, self.folder, self.n = app, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.n += 1
        name = self.folder / f"{self.n:03d}-{scope['path'].strip('/') or 'root'}"
        body, answer = [], []

        async def receive_and_keep():
            message = await receive()
            body.append(message.get("body", b""))
            return message

        async def send_and_keep(message):
            if message["type"] == "http.response.body":
                answer.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_and_keep, send_and_keep)
        name.with_suffix(".req.json").write_bytes(b"".join(body))
        name.with_suffix(".answer.json").write_bytes(b"".join(answer))


def rectangle(box, size=(600, 400)) -> dict:
    w, h = size
    x0, y0, x1, y1 = box
    return {"id": f"r{x0}{y0}", "from_name": "box", "to_name": "image", "type": "rectanglelabels", "origin": "manual",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": x0 * 100 / w, "y": y0 * 100 / h, "width": (x1 - x0) * 100 / w,
                      "height": (y1 - y0) * 100 / h, "rotation": 0, "rectanglelabels": ["Cup"]}}


def decode(result: dict) -> np.ndarray:
    from label_studio_sdk.converter.brush import decode_rle

    h, w = result["original_height"], result["original_width"]
    return decode_rle(result["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 127


def segment_mask(tmp_path: Path, box) -> np.ndarray:
    from stablesam.cli import main
    from stablesam.models.embedded import EXAMPLES_DIR

    out = tmp_path / f"segment_{'_'.join(map(str, box))}.png"
    assert main(["segment", str(EXAMPLES_DIR / "coffee.jpg"), "--box", ",".join(map(str, box)), "--out", str(out)]) == 0
    return np.array(Image.open(out)) > 127


def test_label_studio_gets_stable_sam_masks(label_studio, tmp_path):
    from label_studio_sdk import LabelStudio
    from helpers import live_server

    from stablesam.models.embedded import EXAMPLES_DIR
    from stablesam.label_studio import ImageFetcher, LabelStudioEngine, create_app, model_version
    from stablesam.models.spec import build_model, parse_model_spec

    auth = {"Authorization": f"Token {LEGACY_TOKEN}"}
    client = LabelStudio(base_url=label_studio, api_key=LEGACY_TOKEN)
    personal_token = client.tokens.create().token  # what a user copies from Account & Settings
    spec = parse_model_spec("tiny-stable-sam")
    engine = LabelStudioEngine(build_model(spec, "cpu"), model_version(spec), ImageFetcher(label_studio, personal_token))
    app = create_app(engine)
    record = os.environ.get("STABLESAM_RECORD_LABEL_STUDIO")
    with live_server(Recorder(app, Path(record)) if record else app) as backend:
        project = client.projects.create(title="Stable-SAM", label_config=CONFIG)
        with open(EXAMPLES_DIR / "coffee.jpg", "rb") as f:
            r = httpx.post(f"{label_studio}/api/projects/{project.id}/import", headers=auth,
                           files={"file": ("coffee.jpg", f, "image/jpeg")}, timeout=120)
        assert r.status_code == 201, r.text
        (task,) = client.tasks.list(project=project.id)
        upload = task.data["image"]
        assert upload.startswith("/data/upload/"), upload

        ml = client.ml.create(project=project.id, url=backend.rstrip("/"), is_interactive=True, title="Stable-SAM")
        ml = client.ml.get(id=ml.id)
        assert ml.state == "CO" and ml.model_version == engine.model_version, (ml.state, ml.error_message)

        # interactive: a box drawn with the smart RectangleLabels tool
        r = httpx.post(f"{label_studio}/api/ml/{ml.id}/interactive-annotating", headers=auth, timeout=300,
                       json={"task": task.id, "context": {"result": [rectangle(CUP_BOX)]}})
        assert r.status_code == 200 and "errors" not in r.json(), r.text
        (region,) = r.json()["data"]["result"]
        assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Cup"]
        assert np.array_equal(decode(region), segment_mask(tmp_path, CUP_BOX))
        assert engine.encoder_calls == 1

        # pre-annotation: a task holding a detector's box and a person's box
        r = httpx.post(f"{label_studio}/api/projects/{project.id}/import", headers=auth, timeout=120, json=[{
            "data": {"image": upload},
            "annotations": [{"result": [rectangle(CUP_BOX)]}],
            "predictions": [{"model_version": "detector", "score": 0.9, "result": [rectangle(DETECTOR_BOX)]}],
        }])
        assert r.status_code == 201, r.text
        boxed = max(t.id for t in client.tasks.list(project=project.id))
        r = httpx.post(f"{label_studio}/api/dm/actions", headers=auth, timeout=300,
                       params={"id": "retrieve_tasks_predictions", "project": project.id},
                       json={"selectedItems": {"all": False, "included": [boxed]}})
        assert r.status_code == 200, r.text
        stored = [p for p in client.predictions.list(task=boxed) if p.model_version == engine.model_version]
        assert len(stored) == 1, [p.model_version for p in client.predictions.list(task=boxed)]
        regions = stored[0].result
        assert [x["type"] for x in regions] == ["brushlabels", "brushlabels"]
        assert np.array_equal(decode(regions[0]), segment_mask(tmp_path, CUP_BOX))
        assert np.array_equal(decode(regions[1]), segment_mask(tmp_path, DETECTOR_BOX))
        assert engine.encoder_calls == 1  # the same upload: its embedding was kept
