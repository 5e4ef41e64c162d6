"""The README's Label Studio figure: a real Label Studio page with a Stable-SAM mask.

Needs a running Label Studio (started with ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false),
a running `stablesam label-studio` that can fetch its uploads (LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY set), an account's e-mail, password and API token, and Debian's chromium.
It creates a project with the labelling config of docs/usage_details.md
(tests/data/label_studio/cup_config.xml), uploads the coffee photo, connects the backend, then
in headless Chromium logs in, opens the task, switches on Auto-Annotation (and Auto-Accept
Suggestions), picks the smart rectangle tool and the label, drags a box around the
cup, waits for the mask and takes the screenshot.

    python scripts/label_studio_screenshot.py --label-studio http://127.0.0.1:8080 --backend http://127.0.0.1:9090 \\
        --email you@example.com --password ... --token ... --out docs/results/label_studio.jpg
"""

import argparse
import io
from pathlib import Path

import httpx
from PIL import Image

from stablesam.models.embedded import EXAMPLES_DIR

REPO = Path(__file__).resolve().parents[1]
CONFIG = (REPO / "tests" / "data" / "label_studio" / "cup_config.xml").read_text()  # the real-Label-Studio test's
BOX = (150, 10, 430, 320)  # a loose box around the cup in coffee.jpg (600 x 400)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update"]


def setup_project(ls: str, backend: str, token: str) -> tuple:
    """(project id, task id): a new project, the photo uploaded, the backend connected."""
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=ls, api_key=token)
    project = client.projects.create(title="Stable-SAM in Label Studio", label_config=CONFIG)
    with open(EXAMPLES_DIR / "coffee.jpg", "rb") as f:
        httpx.post(f"{ls}/api/projects/{project.id}/import", headers={"Authorization": f"Token {token}"},
                   files={"file": ("coffee.jpg", f, "image/jpeg")}, timeout=120).raise_for_status()
    (task,) = client.tasks.list(project=project.id)
    client.ml.create(project=project.id, url=backend.rstrip("/"), is_interactive=True, title="Stable-SAM")
    return project.id, task.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label-studio", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--token", required=True, help="an API token of that account")
    parser.add_argument("--out", default="docs/results/label_studio.jpg")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    ls = args.label_studio.rstrip("/")
    project, task = setup_project(ls, args.backend, args.token)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{ls}/user/login/")
        page.fill("input[name=email]", args.email)
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        page.goto(f"{ls}/projects/{project}/data?task={task}")
        image = page.locator("[class*=image-element]").first  # the photo on the labelling canvas
        image.wait_for(timeout=60_000)
        page.wait_for_timeout(3000)
        page.locator("[data-testid=bottombar-auto-annotation-toggle]").click()
        page.get_by_text("Auto-Accept Suggestions").click()
        smart = page.locator(".lsf-toolbar__group").last  # Auto-Detect: a click cycles its smart tools
        smart.click()
        smart.click()  # the first is the brush's, the second the smart rectangle
        page.mouse.move(600, 700)
        page.locator("text=Cup").nth(1).click()  # the RectangleLabels label
        page.wait_for_timeout(500)
        box = image.bounding_box()
        sx, sy = box["width"] / 600, box["height"] / 400
        x0, y0, x1, y1 = (box["x"] + BOX[0] * sx, box["y"] + BOX[1] * sy, box["x"] + BOX[2] * sx, box["y"] + BOX[3] * sy)
        with page.expect_response(lambda r: "interactive-annotating" in r.url, timeout=120_000):
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=10)
            page.mouse.move(x1, y1, steps=10)
            page.mouse.up()
        page.wait_for_timeout(3000)
        png = page.screenshot(clip={"x": 240, "y": 0, "width": 1040, "height": 590})
        browser.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(io.BytesIO(png)).convert("RGB").save(out, quality=88)
    print(f"wrote {out} (project {project}, task {task})")


if __name__ == "__main__":
    main()
