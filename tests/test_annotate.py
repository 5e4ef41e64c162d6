"""`stablesam annotate`: boxes of a dataset to COCO RLE masks, equal to `stablesam segment`'s,
from each input format, resumable after kill -9, the same file with 1 or 2 workers and on Ray,
bad inputs skipped and counted (or, with --strict, one line and nothing written)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from conftest import SMALL_ARCH, build_small_sam, perturb_plugins
from stablesam import StableSam, save_plugin
from stablesam.cli import main
from stablesam.data.datasets import DataWarning
from stablesam.models.files import save_sam_file

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "stablesam" / "examples"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def small_spec(tmp_path_factory) -> str:
    """A small random SAM file and a perturbed plugin: a model SPEC every process can build."""
    folder = tmp_path_factory.mktemp("model")
    sam_file, plugin = folder / "sam.pt", folder / "plugin.pt"
    model = StableSam(build_small_sam())
    perturb_plugins(model, scale=0.05)
    save_sam_file(model.sam, SMALL_ARCH, sam_file)
    save_plugin(model, plugin, base_name="sam:sam.pt")
    return f"sam:{sam_file}+plugin={plugin}"


def make_dataset(root: Path, n: int = 6, size=(72, 96)) -> Path:
    """`n` images (objects: bright rectangles) and a COCO instances file with 2 boxes each."""
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    coco = {"info": {"description": "toy"}, "images": [], "annotations": [],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    h, w = size
    for i in range(n):
        img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        img[10 + i : 40 + i, 8 : 40 + 2 * i] = (220, 60, 40)
        img[30:65, 50:90] = (40, 200, 90)
        Image.fromarray(img).save(images / f"im{i}.png")
        coco["images"].append({"id": 100 + i, "file_name": f"im{i}.png", "width": w, "height": h})
        coco["annotations"] += [
            {"id": 1000 + 2 * i, "image_id": 100 + i, "category_id": 1, "bbox": [6, 8 + i, 36 + 2 * i, 34.5]},
            {"id": 1001 + 2 * i, "image_id": 100 + i, "category_id": 2, "bbox": [48.0, 28.0, 44.0, 39.0],
             "segmentation": [[48, 28, 92, 28, 92, 67]], "area": 800},
        ]
    (root / "coco.json").write_text(json.dumps(coco))
    return root


def annotate(data: Path, out: Path, spec: str, *extra: str, boxes=None) -> int:
    return main(["annotate", "--images", str(data / "images"), "--boxes", str(boxes or data / "coco.json"),
                 "--out", str(out), "--model", spec, "--device", "cpu", *map(str, extra)])


def decode(ann: dict) -> np.ndarray:
    return mask_utils.decode(ann["segmentation"]).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_masks_equal_segment_on_the_examples(tmp_path, capsys):
    """The embedded model on the shipped examples: each annotation's RLE decodes to the mask
    `stablesam segment` writes for the same box."""
    boxes = {"coffee.jpg": [[170, 15, 240, 290], [30, 200, 200, 150]], "cat.jpg": [[100, 20, 250, 270]]}
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i, (name, bbs) in enumerate(boxes.items(), start=1):
        w, h = Image.open(EXAMPLES / name).size
        coco["images"].append({"id": i, "file_name": name, "width": w, "height": h})
        coco["annotations"] += [{"id": 10 * i + k, "image_id": i, "category_id": 1, "bbox": bb}
                                for k, bb in enumerate(bbs)]
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "out.json"
    assert main(["annotate", "--images", str(EXAMPLES), "--boxes", str(tmp_path / "coco.json"),
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [a["id"] for a in result["annotations"]] == [10, 11, 20]
    names = {im["id"]: im["file_name"] for im in result["images"]}
    for ann in result["annotations"]:
        x, y, w, h = ann["input_bbox"]
        png = tmp_path / f"seg{ann['id']}.png"
        assert main(["segment", str(EXAMPLES / names[ann["image_id"]]), "--box", f"{x:g},{y:g},{x + w:g},{y + h:g}",
                     "--out", str(png)]) == 0
        reference = np.array(Image.open(png)) > 127
        assert reference.sum() > 1000, "a real object, not an empty mask"
        assert iou(decode(ann), reference) > 0.99
        printed = capsys.readouterr().out
        assert abs(float(re.search(r"predicted IoU: ([0-9.]+)", printed).group(1)) - ann["predicted_iou"]) < 2e-3
        assert abs(float(re.search(r"alpha = ([0-9.]+)", printed).group(1)) - ann["routing_alpha"][0]) < 2e-3


def test_output_fields_and_masks_dir(tmp_path, small_spec):
    data = make_dataset(tmp_path / "d", n=3)
    out = tmp_path / "out.json"
    assert annotate(data, out, small_spec, "--masks-dir", tmp_path / "masks") == 0
    result = json.loads(out.read_text())
    source = json.loads((data / "coco.json").read_text())
    assert result["images"] == source["images"] and result["categories"] == source["categories"]
    assert result["info"] == source["info"]
    assert [a["id"] for a in result["annotations"]] == [a["id"] for a in source["annotations"]]
    for ann, src in zip(result["annotations"], source["annotations"]):
        mask = decode(ann)
        assert mask.shape == (72, 96) and ann["area"] == int(mask.sum())
        assert ann["input_bbox"] == src["bbox"] and ann["category_id"] == src["category_id"]
        assert ann["segmentation"] != src.get("segmentation")  # the input's polygon is replaced
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert 0 <= ann["stability_score"] <= 1 and np.isfinite(ann["predicted_iou"])
        assert abs(sum(ann["routing_alpha"]) - 1) < 1e-3
    # --masks-dir: one PNG per image, pixel k = the image's k-th annotation
    for image in result["images"]:
        ids = np.array(Image.open(tmp_path / "masks" / Path(image["file_name"]).with_suffix(".png")))
        anns = [a for a in result["annotations"] if a["image_id"] == image["id"]]
        for k, ann in enumerate(anns, start=1):
            assert (ids == k).sum() > 0 or not decode(ann).any()
            assert np.all(decode(ann)[ids == k])
    assert any(decode(a).any() for a in result["annotations"])
    assert not (tmp_path / "out.json.partial").exists()


def test_each_input_format_gives_the_same_annotations(tmp_path, small_spec):
    """COCO instances, a COCO results list (+ --image-info, --min-score) and a YOLO folder."""
    data = make_dataset(tmp_path / "d", n=3)
    coco = json.loads((data / "coco.json").read_text())
    assert annotate(data, tmp_path / "coco_out.json", small_spec) == 0
    reference = json.loads((tmp_path / "coco_out.json").read_text())["annotations"]
    # detector results: every box with a score, and one low-scoring extra box that --min-score drops
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in coco["annotations"]]
    results.insert(1, {"image_id": 100, "category_id": 1, "bbox": [1, 1, 20, 20], "score": 0.1})
    (data / "results.json").write_text(json.dumps(results))
    assert annotate(data, tmp_path / "res_out.json", small_spec, "--image-info", data / "coco.json",
                    "--min-score", 0.5, boxes=data / "results.json") == 0
    got = json.loads((tmp_path / "res_out.json").read_text())["annotations"]
    assert len(got) == len(reference) and all(a["score"] == 0.9 for a in got)
    assert [a["segmentation"] for a in got] == [a["segmentation"] for a in reference]
    # YOLO: one .txt per image (normalised cx cy w h), class k -> category k + 1, names from classes.txt
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("a\nb\n")
    for image in coco["images"]:
        w, h = image["width"], image["height"]
        lines = [f"{a['category_id'] - 1} {(a['bbox'][0] + a['bbox'][2] / 2) / w} {(a['bbox'][1] + a['bbox'][3] / 2) / h} "
                 f"{a['bbox'][2] / w} {a['bbox'][3] / h}" for a in coco["annotations"] if a["image_id"] == image["id"]]
        (labels / (Path(image["file_name"]).stem + ".txt")).write_text("\n".join(lines) + "\n")
    assert annotate(data, tmp_path / "yolo_out.json", small_spec, boxes=labels) == 0
    yolo = json.loads((tmp_path / "yolo_out.json").read_text())
    assert yolo["categories"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert [im["file_name"] for im in yolo["images"]] == ["im0.png", "im1.png", "im2.png"]
    assert [a["category_id"] for a in yolo["annotations"]] == [a["category_id"] for a in reference]
    for a, b in zip(yolo["annotations"], reference):
        assert np.allclose(a["input_bbox"], b["input_bbox"], atol=0.01)
        assert iou(decode(a), decode(b)) > 0.99


def read_bytes_without_journal(out: Path) -> bytes:
    assert not out.with_name(out.name + ".partial").exists()
    return out.read_bytes()


def cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "stablesam", *map(str, args)], env=env, **kw)


@pytest.mark.slow
def test_kill_midway_and_rerun_gives_the_uninterrupted_file(tmp_path, small_spec):
    data = make_dataset(tmp_path / "d", n=40, size=(96, 128))
    whole = tmp_path / "whole.json"
    assert annotate(data, whole, small_spec) == 0
    out = tmp_path / "out.json"
    args = ["annotate", "--images", data / "images", "--boxes", data / "coco.json", "--out", out,
            "--model", small_spec, "--device", "cpu"]
    proc = cli(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "out.json.partial" / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = journal.read_bytes().count(b"\n")
    assert 3 <= done < 40, "killed midway"
    assert not out.exists()
    with open(journal, "ab") as f:  # as if killed in the middle of a line
        f.write(b'{"image_id": 1')
    rerun = cli(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"this run: {40 - done} images" in stdout
    assert read_bytes_without_journal(out) == whole.read_bytes()


@pytest.mark.slow
def test_two_workers_give_the_same_file_as_one(tmp_path, small_spec):
    data = make_dataset(tmp_path / "d", n=6)
    assert annotate(data, tmp_path / "one.json", small_spec, "--workers", 1) == 0
    assert annotate(data, tmp_path / "two.json", small_spec, "--workers", 2) == 0
    assert read_bytes_without_journal(tmp_path / "two.json") == (tmp_path / "one.json").read_bytes()
    assert len(json.loads((tmp_path / "two.json").read_text())["annotations"]) == 12


@pytest.mark.slow
def test_ray_gives_the_same_file_as_local(tmp_path, small_spec):
    ray = pytest.importorskip("ray", reason="needs the [ray] extra")
    data = make_dataset(tmp_path / "d", n=4)
    assert annotate(data, tmp_path / "local.json", small_spec) == 0
    assert annotate(data, tmp_path / "ray.json", small_spec, "--engine", "ray", "--workers", 2,
                    "--masks-dir", tmp_path / "masks") == 0
    assert not ray.is_initialized(), "the local cluster annotate started is shut down"
    assert not ray_processes(), "no Ray process is left"
    assert read_bytes_without_journal(tmp_path / "ray.json") == (tmp_path / "local.json").read_bytes()
    assert len(list((tmp_path / "masks").glob("*.png"))) == 4


def ray_processes() -> list:
    """Command lines of the Ray processes on this machine (actors are 'ray::...')."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::") or "raylet" in cmd or "gcs_server" in cmd:
            found.append(cmd)
    return found


def bad_dataset(root: Path) -> Path:
    """Three images: good, missing and empty (0 bytes); boxes: good, outside, NaN, unknown image id."""
    data = make_dataset(root, n=1)
    coco = json.loads((data / "coco.json").read_text())
    coco["images"] += [{"id": 201, "file_name": "missing.png", "width": 96, "height": 72},
                       {"id": 202, "file_name": "empty.png", "width": 96, "height": 72}]
    (data / "images" / "empty.png").write_bytes(b"")
    coco["annotations"] += [
        {"id": 1, "image_id": 100, "category_id": 1, "bbox": [80, 60, 40, 40]},  # outside the 96 x 72 image
        {"id": 2, "image_id": 100, "category_id": 1, "bbox": [float("nan"), 1, 5, 5]},
        {"id": 3, "image_id": 999, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 4, "image_id": 201, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 5, "image_id": 202, "category_id": 1, "bbox": [1, 1, 5, 5]},
    ]
    (data / "coco.json").write_text(json.dumps(coco))  # NaN as JSON's NaN (json.dumps writes it)
    return data


def test_bad_inputs_are_skipped_and_counted(tmp_path, small_spec, capsys):
    data = bad_dataset(tmp_path / "d")
    out = tmp_path / "out.json"
    with pytest.warns(DataWarning) as record:
        assert annotate(data, out, small_spec) == 0
    captured = capsys.readouterr()
    result = json.loads(out.read_text())
    assert [a["id"] for a in result["annotations"]] == [1000, 1001]
    assert result["stablesam"]["skipped"] == {"bbox holds NaN or infinity": 1, "box outside the image": 1,
                                              "missing image": 1, "unknown image id": 1,
                                              "unreadable image": 1}
    assert "5 skipped" in captured.out
    messages = [str(w.message) for w in record if w.category is DataWarning]
    assert len(messages) == 5 and all(m.endswith("; skipped") and "\n" not in m for m in messages)
    assert any("box id 1: box outside the image" in m for m in messages)


def test_strict_bad_input_is_one_line_and_nothing_written(tmp_path, small_spec, capsys):
    data = bad_dataset(tmp_path / "d")
    out = tmp_path / "out.json"
    assert annotate(data, out, small_spec, "--strict") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stablesam annotate: error: ") and "\n" not in err and "--strict" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    # an image that only fails when decoded (a cut PNG) is found while running: nothing written either
    data = make_dataset(tmp_path / "e", n=2)
    png = (data / "images" / "im1.png").read_bytes()
    (data / "images" / "im1.png").write_bytes(png[: len(png) // 2])
    masks = tmp_path / "e_masks"
    assert annotate(data, tmp_path / "e_out.json", small_spec, "--strict", "--masks-dir", masks) == 2
    assert "unreadable image" in capsys.readouterr().err
    assert not (tmp_path / "e_out.json").exists() and not (tmp_path / "e_out.json.partial").exists()
    assert not list(masks.rglob("*.png")), "im0's mask, written before im1 failed, is removed again"


@pytest.mark.parametrize("case", ["empty boxes", "results without image info", "not coco", "out exists", "masks dir not empty",
                                  "other job's journal", "bad model", "workers 0"])
def test_unusable_arguments_are_one_line_errors(tmp_path, small_spec, capsys, case):
    data = make_dataset(tmp_path / "d", n=1)
    out, boxes, extra = tmp_path / "out.json", data / "coco.json", []
    spec = small_spec
    if case == "empty boxes":
        boxes = tmp_path / "empty.json"
        boxes.write_text("")
    elif case == "results without image info":
        boxes = tmp_path / "results.json"
        boxes.write_text(json.dumps([{"image_id": 100, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 1}]))
    elif case == "not coco":
        boxes = tmp_path / "x.json"
        boxes.write_text(json.dumps({"hello": 1}))
    elif case == "out exists":
        out.write_text("{}")
    elif case == "masks dir not empty":
        (tmp_path / "masks").mkdir()
        (tmp_path / "masks" / "mine.png").write_bytes(b"x")
        extra = ["--masks-dir", tmp_path / "masks"]
    elif case == "other job's journal":
        (tmp_path / "out.json.partial").mkdir()
        (tmp_path / "out.json.partial" / "job.json").write_text('{"model": "another"}')
    elif case == "bad model":
        spec = "sam:/nonexistent.pth"
    elif case == "workers 0":
        extra = ["--workers", "0"]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) if case == "workers 0" else _nothing():
        assert annotate(data, out, spec, *extra, boxes=boxes) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("stablesam annotate: error: ")
    assert len(err.splitlines()) == 1 or err.startswith("usage: ")  # argparse prints its usage first
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case in ("out exists", "masks dir not empty"):  # --force: OUT.json replaced, other files kept
        assert annotate(data, out, spec, *extra, "--force", boxes=boxes) == 0
        assert json.loads(out.read_text())["annotations"]
        assert case == "out exists" or (tmp_path / "masks" / "mine.png").read_bytes() == b"x"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_default_model_is_the_spec_default():
    """commands/annotate.py names the default SPEC without importing models.spec (start-up)."""
    from stablesam.commands.annotate import DEFAULT_MODEL
    from stablesam.models.spec import DEFAULT_SPEC

    assert DEFAULT_MODEL == DEFAULT_SPEC


def test_ray_engine_without_the_extra_names_it(tmp_path, small_spec, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    data = make_dataset(tmp_path / "d", n=1)
    assert annotate(data, tmp_path / "out.json", small_spec, "--engine", "ray") == 2
    err = capsys.readouterr().err.strip()
    assert err == ('stablesam annotate: error: --engine ray needs the [ray] extra: '
                   'pip install "stable-segment-anything[ray]"')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
