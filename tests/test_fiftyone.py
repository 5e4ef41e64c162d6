"""FiftyOne: the README's example as written, on a COCO folder of the shipped examples: a real
dataset (FiftyOne's own database, which FiftyOne starts), masks through `apply_model(StableSamModel(),
prompt_field=...)` equal to `stablesam segment`'s for the same boxes, exported back to COCO.
FiftyOne runs in its own process, with a database folder of the test's, so nothing of it
outlives the test."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stablesam.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "stablesam" / "examples"
SRC = str(Path(__file__).resolve().parents[1] / "src")

spec = importlib.util.spec_from_file_location("readme_commands", ROOT / "scripts" / "readme_commands.py")
readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme)

# After the README's example (run as written, from a folder holding coco/): what the test checks.
CHECKS = r"""
import json, os
import numpy as np

rows = []
for sample in dataset.sort_by("filepath"):
    for det in sample["stable_sam"].detections:
        np.save(os.path.join("out", f"{len(rows)}.npy"), det.mask)
        rows.append(dict(file=os.path.basename(sample.filepath), bbox=det.bounding_box, label=det.label,
                         predicted_iou=det["predicted_iou"], stability_score=det["stability_score"],
                         routing_alpha=det["routing_alpha"], width=sample.metadata.width,
                         height=sample.metadata.height))
json.dump(rows, open(os.path.join("out", "rows.json"), "w"))
dataset.delete()
"""


def fiftyone_env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "FIFTYONE_DATABASE_DIR": str(tmp_path / "db"),
            "FIFTYONE_DO_NOT_TRACK": "true", "FIFTYONE_SHOW_PROGRESS_BARS": "false"}


@pytest.mark.slow
def test_apply_model_with_prompt_field_gives_the_masks_of_segment(tmp_path):
    if importlib.util.find_spec("fiftyone") is None:  # not imported here: it runs in its own process
        pytest.skip("needs the [fiftyone] extra")
    boxes = {"coffee.jpg": [[170, 15, 240, 290]], "cat.jpg": [[100, 20, 250, 270], [60, 150, 120, 100]]}
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i, (name, bbs) in enumerate(boxes.items(), start=1):
        w, h = Image.open(EXAMPLES / name).size
        coco["images"].append({"id": i, "file_name": name, "width": w, "height": h})
        coco["annotations"] += [{"id": 10 * i + k, "image_id": i, "category_id": 1, "bbox": bb, "area": bb[2] * bb[3],
                                 "iscrowd": 0} for k, bb in enumerate(bbs)]
    (tmp_path / "coco" / "images").mkdir(parents=True)
    for name in boxes:
        shutil.copy(EXAMPLES / name, tmp_path / "coco" / "images" / name)
    (tmp_path / "coco" / "annotations.json").write_text(json.dumps(coco))
    out = tmp_path / "out"
    out.mkdir()
    script = readme.named("fiftyone").code + CHECKS
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=fiftyone_env(tmp_path),
                         capture_output=True, text=True, timeout=600)
    if "MongoDB could not be" in run.stderr or "Could not find `mongod`" in run.stderr:
        pytest.skip("needs the [fiftyone] extra with a database that runs here (see .ci/run)")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((out / "rows.json").read_text())
    assert sorted(r["file"] for r in rows) == ["cat.jpg", "cat.jpg", "coffee.jpg"]
    for n, row in enumerate(rows):
        w, h = row["width"], row["height"]
        x, y, bw, bh = row["bbox"]
        x0, y0, x1, y1 = x * w, y * h, (x + bw) * w, (y + bh) * h
        assert [round(v) for v in (x0, y0, x1 - x0, y1 - y0)] in boxes[row["file"]]  # the prompt box is kept
        png = tmp_path / f"seg{n}.png"
        assert main(["segment", str(EXAMPLES / row["file"]), "--box",
                     f"{round(x0)},{round(y0)},{round(x1)},{round(y1)}", "--out", str(png)]) == 0
        reference = (np.array(Image.open(png)) > 127)[round(y0) : round(y1), round(x0) : round(x1)]
        mask = np.load(out / f"{n}.npy")
        assert mask.shape == reference.shape and reference.sum() > 500
        assert (mask & reference).sum() / (mask | reference).sum() > 0.99
        assert 0 < row["predicted_iou"] <= 1.5 and 0 <= row["stability_score"] <= 1
        assert abs(sum(row["routing_alpha"]) - 1) < 1e-3
    exported = json.loads((tmp_path / "coco_masks" / "labels.json").read_text())
    assert len(exported["annotations"]) == 3 and all(a["segmentation"] for a in exported["annotations"])


def test_without_the_extra_the_import_says_which_extra(tmp_path):
    """Without fiftyone, importing the integration is one ImportError naming the extra."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "fiftyone.py").write_text("raise ImportError('No module named fiftyone')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), SRC])}
    run = subprocess.run([sys.executable, "-c", "import stablesam.integrations.fiftyone"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert 'pip install "stable-segment-anything[fiftyone]"' in run.stderr.strip().splitlines()[-1]
