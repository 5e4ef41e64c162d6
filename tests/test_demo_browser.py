"""`stablesam demo` in a real browser: headless Chromium (Debian's package) driven by Playwright.

Set STABLESAM_ARTIFACTS=DIR to keep the screenshot (default: pytest's tmp_path)."""

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stablesam.demo import create_app
from stablesam.models.embedded import EXAMPLES_DIR
from helpers import demo_model, live_server
from helpers import CHROMIUM, CHROMIUM_ARGS

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="needs playwright for Python (pip install -e '.[test]')"),
]

# Mean absolute difference per canvas pixel between a canvas and the plain image drawn at its size.
DIFF_FROM_IMAGE = """async ([ids, src]) => {
  const im = new Image(); im.src = src; await im.decode();
  const out = {};
  for (const id of ids) {
    const c = document.getElementById(id);
    const ref = document.createElement("canvas"); ref.width = c.width; ref.height = c.height;
    const rc = ref.getContext("2d"); rc.drawImage(im, 0, 0, c.width, c.height);
    const a = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const b = rc.getImageData(0, 0, c.width, c.height).data;
    let sum = 0, changed = 0;
    for (let i = 0; i < a.length; i += 4) {
      const d = Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
      sum += d; if (d > 30) changed++;
    }
    out[id] = { mean: sum / (a.length / 4), changed: changed / (a.length / 4), url: c.toDataURL() };
  }
  return out;
}"""


def test_page_in_headless_chromium(fake_embedded, tmp_path):
    artifacts = Path(os.environ.get("STABLESAM_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    example = EXAMPLES_DIR / "cat.jpg"
    image_url = f"/api/images/{hashlib.sha256(example.read_bytes()).hexdigest()[:32]}.jpg"
    app = create_app(demo_model(fake_embedded), max_bytes=2_000_000, model_name="tiny-stable-sam")
    with live_server(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                     handle_sigint=False, handle_sigterm=False, handle_sighup=False)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base)
            expect(page.locator("#examples button")).to_have_count(2)
            expect(page.locator("#model-info")).to_contain_text("tiny-stable-sam")

            # upload an example through the file input, then draw a sloppy box with the mouse
            page.set_input_files("#file", str(example))
            expect(page.locator("#image-stats")).to_contain_text("451×300")
            canvas = page.locator("#prompt-canvas").bounding_box()
            x, y, w, h = canvas["x"], canvas["y"], canvas["width"], canvas["height"]
            page.mouse.move(x + 0.10 * w, y + 0.05 * h)
            page.mouse.down()
            page.mouse.move(x + 0.50 * w, y + 0.50 * h, steps=5)
            page.mouse.move(x + 0.88 * w, y + 0.95 * h, steps=5)
            page.mouse.up()
            page.wait_for_selector('#sam-canvas[data-mask="1"]')
            page.wait_for_selector('#stable-canvas[data-mask="1"]')
            expect(page.locator("#sam-iou")).to_contain_text("predicted IoU 0.")
            expect(page.locator("#stable-iou")).to_contain_text("predicted IoU 0.")
            expect(page.locator("#alpha")).to_have_text(re.compile(r"α = 0\.\d{3} deformed · 0\.\d{3} regular"))
            diff = page.evaluate(DIFF_FROM_IMAGE, [["prompt-canvas", "sam-canvas", "stable-canvas"], image_url])
            for id in ("sam-canvas", "stable-canvas"):  # the masks are drawn over the image
                assert diff[id]["changed"] > 0.05 and diff[id]["mean"] > diff["prompt-canvas"]["mean"] + 5, diff[id]
            assert diff["sam-canvas"]["url"] != diff["stable-canvas"]["url"]

            # offsets, wobble and the mask download
            page.check("#show-offsets")
            expect(page.locator("#offset-stats")).to_contain_text("arrows every")
            page.click("#wobble")
            page.wait_for_selector('#stable-wobble-canvas[data-heat="1"]')
            expect(page.locator("#sam-stability")).to_contain_text("stability 0.")
            expect(page.locator("#stable-stability")).to_contain_text("stability")
            with page.expect_download() as download:
                page.click("#stable-download")
            assert download.value.suggested_filename == "cat_stable-sam_mask.png"
            saved = tmp_path / "mask.png"
            download.value.save_as(saved)
            mask = np.array(Image.open(saved))
            assert mask.shape == (300, 451) and set(np.unique(mask)) <= {0, 255}
            shot = artifacts / "demo_browser.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")

            # a bad upload: a message in the page, and the page keeps working
            page.set_input_files("#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}])
            expect(page.locator("#message.error")).to_contain_text("notes.png: not an image")
            page.set_input_files("#file", files=[{"name": "big.jpg", "mimeType": "image/jpeg", "buffer": b"x" * 2_000_001}])
            expect(page.locator("#message.error")).to_contain_text(
                "big.jpg: the file is 2,000,001 bytes; the limit is 2,000,000 bytes")
            page.click("#examples button[data-example='coffee.jpg']")
            expect(page.locator("#image-stats")).to_contain_text("coffee.jpg")
            canvas = page.locator("#prompt-canvas").bounding_box()
            page.mouse.click(canvas["x"] + 0.5 * canvas["width"], canvas["y"] + 0.5 * canvas["height"])  # + click
            page.wait_for_selector('#stable-canvas[data-mask="1"]')
            expect(page.locator("#message")).not_to_have_class("error")
            assert not errors, errors
        finally:
            browser.close()
