"""What a user waits for with the embedded model, old against new, measured side by side in one
run: `stablesam segment` on a 640 x 480 photo end to end (process start to mask written), and
the demo's time for a new box on an image it has already embedded (HTTP request to JSON, both
columns: SAM and Stable-SAM). Rounds alternate between the two models; medians are reported.

    python benchmarks/embedded_latency.py                       # v1 (from git) vs the installed embedded model
    python benchmarks/embedded_latency.py --a SPEC --b SPEC     # any two Stable-SAM SPECs
"""

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
V1_REV = "c0ead58"  # the last commit shipping the v1 embedded model
PHOTO = REPO / "src" / "stablesam" / "examples" / "coffee.jpg"
BOXES = [(170, 15, 410, 305), (150, 10, 430, 320), (200, 40, 380, 280), (120, 0, 460, 330), (180, 30, 400, 300)]


def v1_spec(folder: Path) -> str:
    """sam:FILE+plugin=FILE of the v1 embedded model, extracted from git history."""
    for name in ("tiny_sam.pt", "tiny_stable_sam_plugin.pt"):
        data = subprocess.run(["git", "-C", str(REPO), "show", f"{V1_REV}:src/stablesam/weights/{name}"],
                              capture_output=True, check=True).stdout
        (folder / name).write_bytes(data)
    return f"sam:{folder / 'tiny_sam.pt'}+plugin={folder / 'tiny_stable_sam_plugin.pt'}"


def segment_seconds(spec: str, photo: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stablesam", "segment", str(photo), "--box", "170,15,410,305",
                    "--model", spec, "--out", str(out)], check=True, capture_output=True)
    return time.perf_counter() - t


def demo_client(spec: str):
    from starlette.testclient import TestClient

    from stablesam.demo.app import create_app
    from stablesam.models.spec import build_model, parse_model_spec

    client = TestClient(create_app(build_model(parse_model_spec(spec), "cpu")))
    client.__enter__()
    return client


def demo_new_box_seconds(client, image_id: str, box) -> float:
    t = time.perf_counter()
    r = client.post("/api/predict", json={"image_id": image_id, "box": list(box), "points": []})
    r.raise_for_status()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default=None, metavar="SPEC", help="default: the v1 embedded model from git history")
    parser.add_argument("--b", default="tiny-stable-sam", metavar="SPEC", help="default: the installed embedded model")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        specs = {"A": args.a or v1_spec(tmp), "B": args.b}
        photo = tmp / "photo_640x480.jpg"
        Image.open(PHOTO).convert("RGB").resize((640, 480)).save(photo, quality=92)
        seg = {k: [] for k in specs}
        for _ in range(args.rounds):
            for k, spec in specs.items():
                seg[k].append(segment_seconds(spec, photo, tmp / f"mask_{k}.png"))
        clients, images = {}, {}
        buf = io.BytesIO()
        Image.open(photo).save(buf, format="JPEG")
        for k, spec in specs.items():
            clients[k] = demo_client(spec)
            r = clients[k].post("/api/images", content=buf.getvalue(), headers={"x-filename": "photo.jpg"})
            r.raise_for_status()
            images[k] = r.json()["image_id"]
            demo_new_box_seconds(clients[k], images[k], BOXES[0])  # warm-up
        demo = {k: [] for k in specs}
        for _ in range(args.rounds):
            for box in BOXES:
                for k in specs:
                    demo[k].append(demo_new_box_seconds(clients[k], images[k], box))
        for c in clients.values():
            c.__exit__(None, None, None)
    for k, spec in specs.items():
        print(f"{k}: {spec}")
    a_seg, b_seg = statistics.median(seg["A"]), statistics.median(seg["B"])
    a_demo, b_demo = statistics.median(demo["A"]), statistics.median(demo["B"])
    print(f"segment, 640x480, end to end: A {a_seg:.2f} s, B {b_seg:.2f} s, B/A {b_seg / a_seg:.2f}")
    print(f"demo, new box (SAM + Stable-SAM): A {1000 * a_demo:.0f} ms, B {1000 * b_demo:.0f} ms, "
          f"B/A {b_demo / a_demo:.2f}")


if __name__ == "__main__":
    main()
