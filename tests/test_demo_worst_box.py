"""The demo's "worst box" search (POST /api/worst-box)."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from stablesam.demo import create_app
from stablesam.models.embedded import EXAMPLES_DIR
from stablesam.models.spec import build_model, parse_model_spec

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
BOX = [60, 20, 380, 280]  # a loose box around the cat (451 x 300)


@pytest.fixture
def client(fake_embedded):
    from starlette.testclient import TestClient

    model = build_model(parse_model_spec("tiny-stable-sam"), "cpu")
    with TestClient(create_app(model, model_name="tiny-stable-sam")) as c:
        yield c


def png(data_url: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_worst_box_per_model_within_the_noise(client):
    image_id = client.post("/api/images", content=(EXAMPLES_DIR / "cat.jpg").read_bytes()).json()["image_id"]
    body = {"image_id": image_id, "box": BOX, "scale": 0.2, "seed": 1, "budget": 10}
    r = client.post("/api/worst-box", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    w, h = BOX[2] - BOX[0], BOX[3] - BOX[1]
    for key in ("sam", "stable_sam"):
        got = out[key]
        assert got["passes"] <= 10 and 0 <= got["iou"] <= got["iou_drawn"] <= 1
        assert np.all(np.abs(np.array(got["box"]) - BOX) <= 0.2 * np.array([w, h, w, h]) + 0.1)
        assert png(got["mask"]).shape == (300, 451)
    assert out["sam"]["iou_drawn"] == out["stable_sam"]["iou_drawn"]  # the two masks on the drawn box
    assert client.post("/api/worst-box", json=body).json()["sam"] == out["sam"]  # seeded: same answer
    for bad, message in (({"points": [[200, 150, 1]]}, "a drawn box alone"), ({"budget": 0}, "budget"),
                         ({"scale": 2}, "noise scale"), ({"box": None, "points": [[5, 5, 1]]}, "a drawn box alone")):
        r = client.post("/api/worst-box", json={**body, **bad})
        assert r.status_code == 400 and message in r.json()["error"], (bad, r.text)


def test_worst_box_button_in_headless_chromium(fake_embedded, tmp_path):
    import os
    from pathlib import Path

    from helpers import CHROMIUM, CHROMIUM_ARGS, sync_playwright
    from helpers import demo_model, live_server

    if not CHROMIUM.is_file() or sync_playwright is None:
        pytest.skip("needs Debian's chromium and playwright (see tests/test_demo_browser.py)")
    from playwright.sync_api import expect

    artifacts = Path(os.environ.get("STABLESAM_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    app = create_app(demo_model(fake_embedded), model_name="tiny-stable-sam")
    with live_server(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                     handle_sigint=False, handle_sigterm=False, handle_sighup=False)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base)
            page.click("#examples button[data-example='cat.jpg']")
            expect(page.locator("#image-stats")).to_contain_text("451×300")
            expect(page.locator("#worst-box")).to_be_disabled()
            canvas = page.locator("#prompt-canvas").bounding_box()
            x, y, w, h = canvas["x"], canvas["y"], canvas["width"], canvas["height"]
            page.mouse.move(x + 0.10 * w, y + 0.05 * h)
            page.mouse.down()
            page.mouse.move(x + 0.88 * w, y + 0.95 * h, steps=8)
            page.mouse.up()
            page.wait_for_selector('#stable-canvas[data-mask="1"]')
            page.click("#worst-box")
            page.wait_for_selector('#stable-wobble-canvas[data-worst="1"]')
            for id in ("#sam-stability", "#stable-stability"):
                expect(page.locator(id)).to_contain_text("worst box: IoU")
            expect(page.locator("#stable-stability")).to_contain_text("with SAM's mask on your box")
            page.screenshot(path=str(artifacts / "demo_worst_box.png"), full_page=True)
            page.mouse.click(x + 0.5 * w, y + 0.5 * h)  # a click: the worst box is gone, the button off
            page.wait_for_selector('#stable-wobble-canvas[data-worst=""]')
            expect(page.locator("#worst-box")).to_be_disabled()
            assert not errors, errors
        finally:
            browser.close()
