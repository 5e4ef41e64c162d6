"""The napari plugin: its manifest, the dock widget against `stablesam segment` and SAM's own
correction decoding, 3-D stacks, 16-bit and RGBA images, and bad input as notifications.

The widget tests run headless: Qt on an Xvfb display started here (OpenGL for napari's vispy
canvas), pytest-qt and napari's `make_napari_viewer` fixture (marked slow: a viewer takes seconds). They
use the real embedded model (the same one `stablesam segment` uses by default). The image and
prompt conversions are tested without napari."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Qt's X11 platform on a virtual display (Xvfb, started below): headless, with the OpenGL that
# napari's canvas needs. Qt's offscreen platform gave that canvas no GLX context in about one
# test process of three here, so it is not the default (QT_QPA_PLATFORM=offscreen still works).
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")

from stablesam.data.images import InputError, load_image
from stablesam.models.embedded import EXAMPLES_DIR
from stablesam.napari.engine import Prompt, check_prompt, stability_score
from stablesam.napari.images import plane_to_rgb
from stablesam.napari.prompts import shape_box

NEEDS = "needs the [napari] extra"
MANIFEST = Path(__file__).resolve().parents[1] / "src" / "stablesam" / "napari" / "napari.yaml"
COFFEE = EXAMPLES_DIR / "coffee.jpg"
CUP = (170, 15, 410, 305)  # x0, y0, x1, y1: the cup in coffee.jpg
WAIT_MS = 180_000  # model load and an embedding on two busy cores


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def cli_mask(tmp_path: Path, image: Path, box) -> np.ndarray:
    """`stablesam segment IMAGE --box ...` (in process) -> its mask (H, W) bool."""
    from stablesam.cli import main

    out = tmp_path / f"{image.stem}_cli_mask.png"
    assert main(["segment", str(image), "--box", ",".join(str(v) for v in box), "--out", str(out)]) == 0
    return np.array(Image.open(out)) > 127


def rectangle(box, lead=()) -> np.ndarray:
    """The four corners of a napari rectangle, (..., y, x), from an XYXY box."""
    x0, y0, x1, y1 = box
    return np.array([[*lead, y0, x0], [*lead, y0, x1], [*lead, y1, x1], [*lead, y1, x0]], float)


# ---- without napari: what SAM sees, prompts from layer coordinates


def test_planes_follow_load_image_rules(tmp_path):
    rng = np.random.default_rng(0)
    grey16 = (rng.integers(0, 4096, (40, 50)) + 1000).astype(np.uint16)  # a 12-bit camera, offset
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert np.array_equal(plane_to_rgb(grey16, rgb=False), load_image(tmp_path / "g16.png"))
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(plane_to_rgb(rgba, rgb=True), load_image(tmp_path / "rgba.png"))
    grey8 = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    assert np.array_equal(plane_to_rgb(grey8, rgb=False), np.repeat(grey8[:, :, None], 3, axis=2))
    rgb_float = rng.random((40, 50, 3))
    assert np.array_equal(plane_to_rgb(rgb_float, rgb=True), np.rint(rgb_float * 255).astype(np.uint8))
    rgb16 = rng.integers(0, 65536, (40, 50, 3)).astype(np.uint16)
    assert np.array_equal(plane_to_rgb(rgb16, rgb=True), (rgb16 >> 8).astype(np.uint8))
    with pytest.raises(InputError, match="complex"):
        plane_to_rgb(np.zeros((40, 50), complex), rgb=False)
    with pytest.raises(InputError, match="at least 2 px"):
        plane_to_rgb(np.zeros((1, 50), np.uint8), rgb=False)
    with pytest.raises(InputError, match="no finite"):
        plane_to_rgb(np.full((40, 50), np.nan, np.float32), rgb=False)


def test_rectangles_are_clipped_or_refused():
    # corners (y, x): a rectangle over the top-left corner of a 100 x 200 image is clipped to it
    assert shape_box(np.array([[-5.0, -10.0], [50.0, 60.0]]), (100, 200)).tolist() == [0, 0, 60, 50]
    with pytest.raises(InputError, match="outside the 200x100 image"):
        shape_box(np.array([[120.0, 10.0], [150.0, 60.0]]), (100, 200))
    with pytest.raises(InputError, match="outside the 200x100 image"):
        check_prompt(Prompt(None, np.array([[250.0, 10.0]]), np.array([1])), (100, 200))
    logits = np.array([[3.0, 0.5], [-0.5, -3.0]])  # > +1: 1 pixel, > -1: 3 pixels
    assert stability_score(logits) == pytest.approx(1 / 3)


# ---- the manifest and its registration


@pytest.mark.slow
def test_manifest_is_valid_and_registered():
    pytest.importorskip("npe2", reason=NEEDS)
    npe2 = Path(sys.executable).with_name("npe2")
    checked = subprocess.run([str(npe2), "validate", str(MANIFEST), "--imports"], capture_output=True, text=True)
    assert checked.returncode == 0 and "valid" in checked.stdout.lower(), checked.stdout + checked.stderr
    from importlib.metadata import entry_points

    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    ours = [ep for ep in entry_points(group="napari.manifest") if ep.value == "stablesam.napari:napari.yaml"]
    assert ours, "the installed distribution does not register the manifest (reinstall the package)"
    assert ours[0].dist.metadata["Name"] == manifest.name  # npe2 refuses a manifest named otherwise
    assert {s.key for s in manifest.contributions.sample_data} == {"coffee", "cat"}
    listed = subprocess.run([str(npe2), "list", "--format", "json"], capture_output=True, text=True)
    assert manifest.name in listed.stdout, listed.stdout + listed.stderr  # `npe2 list` finds it


# ---- the dock widget, headless


_XVFB: list = []  # the display of the Xvfb this process started (at most one)


def xvfb_display() -> str:
    """Start Xvfb once per process -> its display (":N"). Qt keeps its connection to the end of
    the process (a server stopped earlier would make Xlib end the process), so a watcher shell
    stops the server within a second after this process has exited."""
    if not _XVFB:
        read, write = os.pipe()
        watch = (f"Xvfb -displayfd {write} -screen 0 1280x1024x24 -nolisten tcp >/dev/null 2>&1 & server=$!; "
                 f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; kill $server")
        subprocess.Popen(["sh", "-c", watch], pass_fds=(write,), start_new_session=True)
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()
        deadline = time.monotonic() + 30
        while True:  # until the server accepts connections
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(f"/tmp/.X11-unix/X{number}")
                break
            except OSError:
                assert time.monotonic() < deadline, "Xvfb did not start"
                time.sleep(0.1)
        _XVFB.append(f":{number}")
    return _XVFB[0]


@pytest.fixture(scope="module")
def display():
    """An X display for OpenGL while this module runs: $DISPLAY, else an Xvfb's."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (Debian's xvfb) for OpenGL in the headless viewer")
    os.environ["DISPLAY"] = xvfb_display()
    try:
        yield os.environ["DISPLAY"]
    finally:
        del os.environ["DISPLAY"]  # other modules see no display (matplotlib then stays on Agg)


@pytest.fixture
def napari_session(request, monkeypatch):
    """(viewer, qtbot, notifications): napari's own test viewer; the widget's notifications
    are collected instead of shown."""
    pytest.importorskip("napari", reason=NEEDS)
    pytest.importorskip("pytestqt", reason=NEEDS)
    request.getfixturevalue("display")
    import stablesam.napari.widget as widget_module

    notes = []
    monkeypatch.setattr(widget_module, "show_warning", lambda text: notes.append(("warning", text)))
    monkeypatch.setattr(widget_module, "show_error", lambda text: notes.append(("error", text)))
    qtbot = request.getfixturevalue("qtbot")  # the QApplication
    # napari asks OpenGL for its limits once (cached) through the current canvas; a hidden
    # viewer's canvas may have no GL context yet, so ask before it exists (napari then makes a
    # temporary canvas of its own)
    from napari._vispy.utils.gl import get_gl_extensions, get_max_texture_sizes

    get_gl_extensions(), get_max_texture_sizes()
    viewer = request.getfixturevalue("make_napari_viewer")()
    return viewer, qtbot, notes


def open_widget(viewer, qtbot, model: str = "tiny-stable-sam"):
    from stablesam.napari.widget import StableSamWidget

    widget = StableSamWidget(viewer, model=model)
    viewer.window.add_dock_widget(widget, name="Stable-SAM")
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    return widget


@pytest.mark.slow
def test_widget_box_click_and_next_object(napari_session, tmp_path):
    import stablesam
    from stablesam.napari.sample import coffee

    viewer, qtbot, notes = napari_session
    data, meta, _ = coffee()[0]
    viewer.add_image(data, **meta)
    widget = open_widget(viewer, qtbot)
    assert widget.ready and widget.engine.encoder_calls == 1
    widget.compare_box.setChecked(True)

    widget.boxes.add_rectangles(rectangle(CUP))
    labels = widget.masks_layer().data
    box_mask = labels == 1
    assert iou(box_mask, cli_mask(tmp_path, COFFEE, CUP)) > 0.99
    assert "predicted IoU" in widget.stats.text() and "α" in widget.stats.text()

    model = stablesam.load_model()
    predictor = stablesam.StableSamPredictor(model)
    predictor.set_image(load_image(COFFEE))
    model.plugins_enabled = False
    sam_masks, _, _ = predictor.predict(box=np.array(CUP), multimask_output=False)
    model.plugins_enabled = True
    assert iou(widget.masks_layer(sam=True).data == 1, sam_masks[0]) > 0.999  # the comparison layer: plain SAM

    # a negative click is a correction: decoded with the box's low-res logits as mask_input
    widget.negative_button.setChecked(True)
    widget.clicks.add(np.array([290.0, 400.0]))  # (y, x)
    _, _, logits = predictor.predict(box=np.array(CUP), multimask_output=False)
    expected, scores, _ = predictor.predict(box=np.array(CUP), point_coords=np.array([[400.0, 290.0]]),
                                            point_labels=np.array([0]), mask_input=logits, multimask_output=False)
    corrected = widget.masks_layer().data == 1
    assert iou(corrected, expected[0]) > 0.999
    assert iou(corrected, box_mask) < 0.99  # the click changed the mask
    assert widget.results["stable_sam"].iou == pytest.approx(float(scores[0]), abs=1e-4)
    assert not widget.clicks.features["positive"].iloc[0]

    # the next object keeps the first one's label
    widget.next_object()
    assert len(widget.boxes.data) == 0 and len(widget.clicks.data) == 0
    widget.positive_button.setChecked(True)
    widget.boxes.add_rectangles(rectangle((20, 280, 160, 390)))
    labels = widget.masks_layer().data
    assert (labels == 2).sum() > 0 and np.array_equal(labels == 1, corrected & (labels != 2))
    assert np.all(corrected[labels == 2] == 0)  # earlier objects are not painted over
    assert widget.engine.encoder_calls == 1 and not notes


@pytest.mark.slow
def test_widget_stack_slice_16bit(napari_session, tmp_path):
    viewer, qtbot, notes = napari_session
    grey = load_image(COFFEE).mean(axis=2)
    plane = (grey * 13 + 900).astype(np.uint16)  # 16-bit data using 900..4215
    Image.fromarray(plane).save(tmp_path / "plane16.png")
    stack = np.stack([np.full_like(plane, 7), plane, plane[::-1]])
    viewer.add_image(stack, name="stack")
    viewer.dims.set_current_step(0, 0)
    widget = open_widget(viewer, qtbot)
    assert widget.ready and widget.index == (0,)  # slice 0 (constant: a black plane) is embedded
    viewer.dims.set_current_step(0, 1)
    qtbot.waitUntil(lambda: widget.ready and widget.index == (1,), timeout=WAIT_MS)
    widget.boxes.add_rectangles(rectangle(CUP, lead=(1,)))
    labels = widget.masks_layer().data
    assert labels.shape == stack.shape
    assert iou(labels[1] == 1, cli_mask(tmp_path, tmp_path / "plane16.png", CUP)) > 0.99
    assert not labels[0].any() and not labels[2].any()
    assert widget.engine.encoder_calls == 2 and not notes

    # a rectangle outside the image: a notification, the mask is left as it was
    before = labels.copy()
    widget.boxes.add_rectangles(rectangle((700, 500, 800, 600), lead=(1,)))
    assert notes and notes[-1][0] == "warning" and "outside the 600x400 image" in notes[-1][1]
    assert np.array_equal(widget.masks_layer().data, before)


@pytest.mark.slow
def test_widget_bad_image_and_model_are_notifications(napari_session):
    viewer, qtbot, notes = napari_session
    viewer.add_image(np.zeros((1, 300), np.uint8), name="line")  # napari shows it; SAM needs 2 x 2 px
    widget = open_widget(viewer, qtbot)
    assert widget.engine is not None and widget.key is None
    assert notes == [("warning", "line: the image is 300x1 px; it needs at least 2 px per side")]
    widget.model_edit.setText("vit_b:/no/such/checkpoint.pth")
    widget.load_model()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.engine is None and notes[-1][0] == "error" and "checkpoint not found" in notes[-1][1]
    assert len(notes[-1][1].splitlines()) == 1


PLUGIN_SCRIPT = """
import time
import numpy as np
import napari
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=False)  # OpenGL first (Mesa's LLVM here), then the plugin imports torch
viewer.open_sample("stable-segment-anything", "coffee")
_, widget = viewer.window.add_plugin_dock_widget("stable-segment-anything", "Stable-SAM")
end = time.monotonic() + 170
while not widget.ready and time.monotonic() < end:
    QApplication.processEvents()
    time.sleep(0.01)
widget.boxes.add_rectangles(np.array([[15, 170], [15, 410], [305, 410], [305, 170]], float))
print("mask pixels", int((widget.masks_layer().data == 1).sum()), viewer.layers[0].data.shape)
"""


@pytest.mark.slow
def test_plugin_contributions_through_napari(request, tmp_path):
    """napari opens the sample and the widget through the registered manifest, in a fresh
    process that starts OpenGL before the plugin imports torch (a software-GL crash otherwise)."""
    pytest.importorskip("napari", reason=NEEDS)
    request.getfixturevalue("display")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PLUGIN_SCRIPT], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(400, 600, 3)" in done.stdout
    pixels = int(done.stdout.split("mask pixels")[1].split()[0])
    assert 20_000 < pixels < 100_000, done.stdout  # the cup (51,547 px with the embedded model)
