"""What an annotator waits for in Label Studio against the demo, side by side in one run: a new
box on an image the server has already embedded, as `stablesam label-studio`'s POST /predict
(Label Studio's interactive request: Stable-SAM's mask as a BrushLabels RLE) and as the demo's
POST /api/predict (its answer: SAM's and Stable-SAM's masks as PNGs, α and the offset arrows).
Both apps share one model and run in this process behind Starlette's test client (HTTP over an
in-process transport); the image reaches the backend from a local HTTP server, once. Rounds
alternate between the two; each call gets a box not seen before. Prints the medians and the
ratio label-studio / demo.

    OMP_NUM_THREADS=1 python benchmarks/label_studio_latency.py [--rounds 30] [--model SPEC]
"""

import argparse
import statistics
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import torch

from stablesam.models.embedded import EXAMPLES_DIR

CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="mask" toName="image"><Label value="Cup"/></BrushLabels>
<RectangleLabels name="box" toName="image" smart="true"><Label value="Cup"/></RectangleLabels></View>"""
SIZE = (600, 400)  # coffee.jpg


def boxes(n: int, seed: int = 0) -> np.ndarray:
    """n different boxes around the cup (170, 15, 410, 305), each side moved by up to 40 px."""
    rng = np.random.default_rng(seed)
    base = np.array([170.0, 15.0, 410.0, 305.0])
    out = base + rng.uniform(-40, 40, size=(n, 4))
    return np.clip(np.round(out, 1), 0, [SIZE[0] - 1, SIZE[1] - 1] * 2)


def ls_body(box, image_url: str) -> dict:
    w, h = SIZE
    x0, y0, x1, y1 = (float(v) for v in box)
    region = {"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": w,
              "original_height": h, "image_rotation": 0,
              "value": {"x": x0 * 100 / w, "y": y0 * 100 / h, "width": (x1 - x0) * 100 / w,
                        "height": (y1 - y0) * 100 / h, "rotation": 0, "rectanglelabels": ["Cup"]}}
    return {"tasks": [{"id": 1, "data": {"image": image_url}, "annotations": [], "predictions": []}],
            "label_config": CONFIG, "project": "1.0", "params": {"context": {"result": [region]}}}


def timed(post) -> float:
    t = time.perf_counter()
    r = post()
    r.raise_for_status()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-stable-sam", metavar="SPEC")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    from starlette.testclient import TestClient

    from stablesam.demo.app import create_app as demo_app
    from stablesam.label_studio import ImageFetcher, LabelStudioEngine, create_app, model_version
    from stablesam.models.spec import build_model, parse_model_spec

    files = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(EXAMPLES_DIR)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    image_url = f"http://127.0.0.1:{files.server_address[1]}/coffee.jpg"
    spec = parse_model_spec(args.model)
    model = build_model(spec, "cpu")
    engine = LabelStudioEngine(model, model_version(spec), ImageFetcher())
    with TestClient(create_app(engine)) as ls, TestClient(demo_app(model)) as demo:
        image_id = demo.post("/api/images", content=(EXAMPLES_DIR / "coffee.jpg").read_bytes()).json()["image_id"]
        ls.post("/predict", json=ls_body((170, 15, 410, 305), image_url)).raise_for_status()  # embeds the image
        times = {"label-studio /predict": [], "demo /api/predict": []}
        for i, box in enumerate(boxes(2 * args.rounds + 4)):
            if i < 4:  # warm-up calls, not counted
                timed(lambda: ls.post("/predict", json=ls_body(box, image_url)))
                timed(lambda: demo.post("/api/predict", json={"image_id": image_id, "box": box.tolist()}))
                continue
            if i % 2:
                times["label-studio /predict"].append(timed(lambda: ls.post("/predict", json=ls_body(box, image_url))))
            else:
                times["demo /api/predict"].append(
                    timed(lambda: demo.post("/api/predict", json={"image_id": image_id, "box": box.tolist()})))
        assert engine.encoder_calls == 1
    files.shutdown()
    print(f"{args.model} on {model.device}, {torch.get_num_threads()} thread(s), {args.rounds} new boxes each, "
          "coffee.jpg (600 x 400) already embedded")
    for name, values in times.items():
        ms = [v * 1000 for v in values]
        print(f"  {name:22s} median {statistics.median(ms):7.1f} ms  (min {min(ms):.1f}, max {max(ms):.1f})")
    ratio = statistics.median(times["label-studio /predict"]) / statistics.median(times["demo /api/predict"])
    print(f"ratio label-studio / demo: {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
