"""Every number has a range (`stablesam.limits`): hostile options, prompt strings, plugin files,
images, device names and file names are each a one-line error before any work (exit code 2 on
the command line, `stablesam.InputError` in the API, HTTP 4xx in the servers), nothing is
written, and no process passes 1 GB or 60 s on the way. Plus a property-based search of the
prompt grammar and the numeric options of segment, eval and train for a traceback."""

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import SMALL_ARCH, build_small_sam, perturb_plugins
from helpers import SRC, make_folder, one_line_error
from stablesam import InputError, PluginConfig, StableSam, StableSamPredictor, save_plugin
from stablesam import limits
from stablesam.cli import main
from stablesam.models.embedded import EXAMPLES_DIR
from stablesam.models.files import save_sam_file
from stablesam.prompts.generation import parse_prompts

COFFEE = EXAMPLES_DIR / "coffee.jpg"
GB = 2**30
LONG = "m" * 300  # a file name no common file system takes (NAME_MAX is 255 bytes)
FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Runs each command line of a JSON list through stablesam.cli.main in one process: its exit
# code, stderr and seconds, and the process's own peak memory (VmHWM: wait4's ru_maxrss would carry
# the forking pytest process's peak over exec).
RUNNER = r"""
import contextlib, io, json, sys, time
from stablesam.cli import main
out = []
for argv in json.load(open(sys.argv[1])):
    err, start = io.StringIO(), time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        except BaseException as e:
            rc, err = repr(e), io.StringIO(err.getvalue() + "Traceback " + repr(e))
    out.append({"argv": " ".join(argv)[:120], "rc": rc, "err": err.getvalue(), "s": time.monotonic() - start})
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
json.dump({"rows": out, "peak_kb": int(hwm[0].split()[1]) if hwm else 0}, open(sys.argv[2], "w"))
"""


def run_rows(rows: list, cwd: Path, timeout: float = 600) -> tuple:
    """(results, peak RSS in bytes) of the command lines `rows` run by RUNNER in one process."""
    (cwd / "rows.json").write_text(json.dumps(rows))
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, "rows.json", "results.json"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        proc.wait()
    finally:
        watchdog.cancel()
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    report = json.loads((cwd / "results.json").read_text())
    (cwd / "rows.json").unlink()
    (cwd / "results.json").unlink()
    return report["rows"], report["peak_kb"] * 1024


def files_under(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small SAM file, a toy dataset, plugin files broken in each way of the table, an image
    3000 x 2 px and a dataset of one 1 x 1 image."""
    root = tmp_path_factory.mktemp("ranges")
    sam_file = root / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    make_folder(root / "toy", n=2)
    model = StableSam(build_small_sam())
    perturb_plugins(model, scale=0.05)
    good = root / "plugin.pt"
    save_plugin(model, good, base_name="small-test-sam")
    obj = torch.load(good, weights_only=True)
    broken = {"wide": {"config": {**obj["config"], "embed_dim": 2**40}},
              "abc": {"config": {**obj["config"], "embed_dim": "abc"}},
              "inf-range": {"config": {**obj["config"], "offset_range": float("inf")}},
              "nan": {"state_dict": {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                     for k, v in obj["state_dict"].items()}}}
    for name, change in broken.items():
        torch.save({**obj, **change}, root / f"plugin-{name}.pt")
    Image.fromarray(np.full((2, 3000, 3), 128, np.uint8)).save(root / "thin.png")
    (root / "one" / "images").mkdir(parents=True)
    (root / "one" / "masks").mkdir()
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(root / "one" / "images" / "a.png")
    Image.fromarray(np.full((1, 1), 255, np.uint8)).save(root / "one" / "masks" / "a.png")
    return root


@pytest.mark.slow  # one process for all rows: its start-up (torch) is most of the time
def test_every_command_line_row_is_one_line_exit_2_nothing_written_bounded(setup):
    sam = f"sam:{setup / 'small_sam.pt'}"
    common = ["--data", "toy", "--model", sam, "--cache", "cache", "--out", "out"]
    ev, tr = ["eval", *common], ["train", *common]
    segment = ["segment", str(COFFEE), "--box", "170,15,410,305", "--model", sam]
    rows = [  # (argv, words the one line must hold)
        (ev + ["--prompts", "noisy-box@1e308"], ["noisy-box@1e308", "0..1"]),
        (ev + ["--prompts", "adv-box@1e308"], ["adv-box@1e308", "0..1"]),
        (ev + ["--prompts", "points@100000"], ["100000", "1..100"]),
        (tr + ["--lr", "1e30"], ["--lr", "1e+30"]),
        (tr + ["--lr", "nan"], ["--lr", "nan"]),
        (ev + ["--seed", "-1"], ["--seed", "-1", "4294967295"]),
        (tr + ["--seed", str(2**32)], ["--seed", "4294967296"]),
        (ev + ["--split", "/missing.txt"], ["--split", "/missing.txt"]),
        (ev + ["--split", "toy"], ["--split", "not a file"]),
        (ev + ["--samples", "100000000"], ["--samples", "1..1000"]),
        (tr + ["--batch-size", "100000000"], ["--batch-size", "1..4096"]),
        (tr + ["--rts-mixture", "interactive=1,interactive-clicks=100000"], ["interactive-clicks", "1..32"]),
        (tr + ["--rts-mixture", "noisy-box=1,max-noise=1e308"], ["max-noise", "0..1"]),
        (segment + [f"--point=5,{i % 300}" for i in range(20000)], ["--point", "20000", "100"]),
        (segment + ["--model", f"{sam}+plugin=plugin-wide.pt"], ["embed_dim", "1..4096"]),
        (segment + ["--model", f"{sam}+plugin=plugin-abc.pt"], ["embed_dim", "'abc'"]),
        (segment + ["--model", f"{sam}+plugin=plugin-inf-range.pt"], ["offset_range", "inf"]),
        (segment + ["--model", f"{sam}+plugin=plugin-nan.pt"], ["NaN"]),
        (["segment", "thin.png", "--box", "10,0,200,1", "--model", sam], ["3000x2", "too thin"]),
        (segment + ["--out", LONG + ".png"], ["--out", "too long"]),
        (segment + ["--out", "ok.png", "--overlay", LONG + ".png"], ["--overlay", "too long"]),
        (["export-onnx", "--model", sam, "--out", LONG + ".onnx"], ["--out", "too long"]),
        (segment + ["--device", "foo:9"], ["foo:9"]),
        (segment + ["--device", "meta"], ["meta"]),
        (ev + ["--device", "cuda:99"], ["cuda:99"]),
    ]
    if not torch.cuda.is_available():
        rows.append((tr + ["--device", "cuda"], ["cuda", "no CUDA GPU"]))
    before = files_under(setup)
    results, peak = run_rows([argv for argv, _ in rows], setup)
    print(f"{len(rows)} rows: peak RSS {peak / 2**20:.0f} MB, slowest row {max(r['s'] for r in results):.1f} s")
    assert peak < GB, f"{peak / GB:.2f} GB"
    for (argv, words), result in zip(rows, results):
        assert result["s"] < 60, result
        one_line_error(result["rc"], result["err"], *words)
        assert "weights are corrupt" not in result["err"] and "not all arguments" not in result["err"], result
    assert files_under(setup) == before


def test_eval_on_a_1x1_image_is_not_scored(setup):
    """A 1 x 1 image is a skipped bad file (one warning line naming it) and, as nothing is left, a
    one-line error, exit code 2; no report with IoU 0."""
    from stablesam.data.datasets import DataWarning

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            pytest.warns(DataWarning, match="1x1"):
        rc = main(["eval", "--data", str(setup / "one"), "--model", f"sam:{setup / 'small_sam.pt'}",
                   "--no-cache", "--out", str(setup / "one-out")])
    assert rc == 2 and "no object could be evaluated" in err.getvalue()
    assert not (setup / "one-out" / "results.json").exists()


# --- the Python API -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictor():
    model = StableSam(build_small_sam())
    p = StableSamPredictor(model)
    p.set_image(np.zeros((60, 80, 3), np.uint8))
    return p


@pytest.mark.parametrize("prompt,words", [
    (dict(box=np.array([10, 10, np.nan, 40])), "finite"),
    (dict(box=np.array([10, 10, np.inf, 40])), "finite"),
    (dict(box=np.array([50, 10, 10, 40])), "reversed"),
    (dict(box=np.array([1e300, 0, 2e300, 5])), "beyond"),
    (dict(point_coords=np.array([[np.nan, 5.0]]), point_labels=np.array([1])), "finite"),
    (dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([7])), "got \\[7\\]"),
    (dict(point_coords=np.array([["a", "b"]]), point_labels=np.array([1])), "numbers"),
    (dict(point_coords=np.zeros((101, 2)), point_labels=np.ones(101)), "at most 100"),
])
def test_predict_checks_prompts_as_the_cli(predictor, prompt, words):
    with pytest.raises(InputError, match=words):
        predictor.predict(**prompt)
    masks, scores, _ = predictor.predict(box=np.array([10, 10, 50, 40]), multimask_output=False)
    assert masks.shape == (1, 60, 80) and np.isfinite(scores).all()  # still usable


def test_predict_batch_checks_and_thin_images(predictor):
    with pytest.raises(InputError, match="finite"):
        predictor.predict_batch(boxes=np.array([[1, 2, np.inf, 4]]))
    with pytest.raises(InputError, match="reversed"):
        predictor.predict_batch(boxes=np.array([[1, 2, 3, 4], [9, 2, 3, 4]]))
    with pytest.raises(InputError, match="labels"):
        predictor.predict_batch(point_coords=np.zeros((1, 2, 2)), point_labels=np.array([[1, 3]]))
    p = StableSamPredictor(predictor.stable)
    with pytest.raises(InputError, match="3000x2 image is too thin"):
        p.set_image(np.zeros((2, 3000, 3), np.uint8))
    p.set_image(np.zeros((12, 3000, 3), np.uint8))  # the thinnest this 256-px model takes: 1 px after resizing
    masks, _, _ = p.predict(box=np.array([100, 0, 900, 11]), multimask_output=False)
    assert masks.shape == (1, 12, 3000)


def test_device_strings():
    assert limits.checked_device("cpu") == torch.device("cpu")
    for text, words in (("foo:9", "not a device torch knows"), ("meta", "cannot run a model"),
                        ("cuda:99", "cuda:99")):
        with pytest.raises(InputError, match=words):
            limits.checked_device(text)


def test_plugin_config_ranges_and_types():
    for bad, words in ((dict(embed_dim="abc"), "embed_dim must be an integer"),
                       (dict(embed_dim=2**40), "1..4096"), (dict(routing_hidden=10**6), "routing_hidden"),
                       (dict(offset_width=257), "at most embed_dim"), (dict(projection_rank=-1), "projection_rank"),
                       (dict(offset_range=float("inf")), "offset_range"), (dict(offset_range=float("nan")), "nan"),
                       (dict(sampled_pe="yes"), "true or false"), (dict(kernel_size=10**6), "kernel_size")):
        with pytest.raises(ValueError, match=words):
            PluginConfig(**bad)
    assert PluginConfig(offset_width=256, projection_rank=0).offset_width == 256


def test_memory_check_names_the_option(monkeypatch):
    need = limits.decoder_bytes(8, grid_cells=1024, tokens=12, width=256)
    assert 200e6 < need < 400e6  # about 35 MB per object at the tiny SAM's 32 x 32 grid, as measured (docs/ranges.md)
    monkeypatch.setattr(limits, "available_memory", lambda device: 1 * GB)
    limits.check_memory(need, "cpu", "a training step", "--batch-size")
    with pytest.raises(InputError, match="needs about .* GB but cpu has 1.0 GB free: lower --batch-size"):
        limits.check_memory(limits.decoder_bytes(64, 1024, 12, 256), "cpu", "a training step", "--batch-size")


def test_train_refuses_a_batch_that_would_not_fit_before_embedding(setup, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda device: 256 * 2**20)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["train", "--data", str(setup / "toy"), "--model", f"sam:{setup / 'small_sam.pt'}",
                   "--out", str(setup / "mem-out"), "--cache", str(setup / "mem-cache"), "--batch-size", "512"])
    one_line_error(rc, err.getvalue(), "--batch-size 512", "lower --batch-size")
    assert not (setup / "mem-cache").exists() or not any((setup / "mem-cache").rglob("*.pt"))


def test_file_names_the_file_system_refuses(tmp_path):
    assert limits.name_problem(tmp_path / "fine.png") is None
    assert "too long" in limits.name_problem(tmp_path / (LONG + ".png"))
    assert "NUL" in limits.name_problem("a\0b.png")


# --- property-based: no traceback anywhere in the grammar and the numeric options ----------------
numbers = st.one_of(st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["nan", "inf", "-inf", "1e308", "-0", "0", "1", "4294967296", "1e-400", "",
                                     "0x10", "1_0", "abc", "٣"]))
prompt_texts = st.builds(lambda kind, arg: f"{kind}@{arg}" if arg is not None else kind,
                         st.sampled_from(["gt-box", "noisy-box", "adv-box", "best-box", "points", "adv-point", "x"]),
                         st.one_of(st.none(), numbers))


@FUZZ
@given(st.lists(prompt_texts, min_size=1, max_size=4).map(",".join))
def test_prompt_grammar_finds_no_traceback(text):
    try:
        prompts = parse_prompts(text)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        for p in prompts:
            assert p.value is None or 0 <= p.value <= 100


def one_line_refusal(argv) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: a value of the wrong type
            rc = e.code
    assert rc == 2 and "Traceback" not in err.getvalue(), (argv, err.getvalue())
    assert len([line for line in err.getvalue().splitlines() if "error" in line]) == 1, (argv, err.getvalue())


@FUZZ
@given(options=st.dictionaries(st.sampled_from(["--samples", "--seed", "--adv-budget", "--max-clicks", "--explain",
                                                 "--limit"]), numbers, max_size=4),
       prompts=st.lists(prompt_texts, min_size=1, max_size=3).map(",".join))
def test_eval_options_find_no_traceback(tmp_path, options, prompts):
    """Valid values end at the missing --data (a one-line error too): nothing runs."""
    one_line_refusal(["eval", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out"),
                    "--prompts", prompts, *(f"{k}={v}" for k, v in options.items())])
    assert not (tmp_path / "out" / "results.json").exists()


@FUZZ
@given(options=st.dictionaries(st.sampled_from(["--batch-size", "--lr", "--seed", "--steps", "--epochs", "--augment",
                                                 "--checkpoint-every", "--offset-range", "--routing-hidden",
                                                 "--offset-width", "--projection-rank", "--routing-temperature",
                                                 "--consistency", "--val-samples"]), numbers, max_size=4),
       mixture=st.lists(st.builds("{}={}".format, st.sampled_from(["noisy-box", "interactive", "interactive-clicks",
                                                                    "max-noise", "max-points", "adv-budget"]),
                                  numbers), max_size=3).map(",".join))
def test_train_options_find_no_traceback(tmp_path, options, mixture):
    if "--epochs" in options and "--steps" in options:
        del options["--steps"]
    one_line_refusal(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out"),
                    *(["--rts-mixture", mixture] if mixture else []), *(f"{k}={v}" for k, v in options.items())])
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


@FUZZ
@given(options=st.dictionaries(st.sampled_from(["--max-pixels", "--points-per-side", "--pred-iou-thresh",
                                                 "--stability-thresh", "--device"]), numbers, max_size=3),
       box=st.lists(numbers, max_size=5).map(",".join))
def test_segment_options_find_no_traceback(tmp_path, options, box):
    """An image of 1 x 1 px: every run ends at the image (or earlier) with one line."""
    image = tmp_path / "tiny.png"
    if not image.exists():
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(image)
    one_line_refusal(["segment", str(image), f"--box={box}", "--out", str(tmp_path / "m.png"),
                    *(f"{k}={v}" for k, v in options.items())])
    assert not (tmp_path / "m.png").exists()


# --- the Label Studio backend -----------------------------------------------------------------------
LS_EXTRA = 'needs the [label-studio] extra: pip install -e ".[label-studio]"'
LS_DATA = Path(__file__).parent / "data" / "label_studio"
REPO = Path(__file__).resolve().parents[1]


class SlowImage(BaseHTTPRequestHandler):
    """Serves /NAME.jpg at about 20 bytes a second, forever; `gone[NAME]` is set when its reader
    went away."""

    gone: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            SlowImage.gone.setdefault(self.path.strip("/"), threading.Event()).set()


@pytest.fixture(scope="module")
def slow_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), SlowImage)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def ls_engine(deadline: float = 60.0):
    pytest.importorskip("label_studio_sdk", reason=LS_EXTRA)
    pytest.importorskip("httpx", reason=LS_EXTRA)
    from stablesam.label_studio import ImageFetcher, LabelStudioEngine

    return LabelStudioEngine(StableSam(build_small_sam()), "stablesam-test", ImageFetcher(deadline=deadline))


def ls_body(tasks: list, context=None) -> dict:
    return {"tasks": tasks, "label_config": (LS_DATA / "cup_config.xml").read_text(), "project": "1",
            "params": {"context": context}}


def box_region(i: int) -> dict:
    return {"id": f"r{i}", "from_name": "box", "to_name": "image", "type": "rectanglelabels",
            "original_width": 600, "original_height": 400, "image_rotation": 0,
            "value": {"x": 10 + i % 50, "y": 10 + i // 50 % 50, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["Cup"]}}


def test_label_studio_caps_boxes_per_request_as_it_caps_clicks():
    engine = ls_engine()
    from starlette.testclient import TestClient

    from stablesam.label_studio import create_app

    with TestClient(create_app(engine)) as client:
        start = time.monotonic()
        task = {"id": 1, "data": {"image": "http://127.0.0.1:9/never-fetched.jpg"}}
        r = client.post("/predict", json=ls_body([task], {"result": [box_region(i) for i in range(5000)]}))
        assert r.status_code == 413 and "5000 boxes" in r.json()["error"] and "\n" not in r.json()["error"]
        tasks = [{**task, "id": i, "annotations": [{"result": [box_region(60 * i + j) for j in range(60)]}]}
                 for i in range(2)]
        r = client.post("/predict", json=ls_body(tasks))
        assert r.status_code == 413 and "120 boxes" in r.json()["error"]
        assert time.monotonic() - start < 60
        assert client.get("/health").json()["status"] == "UP"


def test_label_studio_answers_no_prediction_for_a_task_with_nothing_to_predict():
    """Label Studio stores `{"result": []}` as a prediction and then takes the task as
    predicted; an answer without results stores nothing."""
    engine = ls_engine()
    from starlette.testclient import TestClient

    from stablesam.label_studio import create_app

    with TestClient(create_app(engine)) as client:
        body = json.loads((LS_DATA / "predict_task_opened.json").read_text())
        r = client.post("/predict", json=body)
        assert r.status_code == 200 and r.json()["results"] == []
        r = client.post("/predict", json=ls_body([{"id": i, "data": {"image": "x.jpg"}} for i in range(3)]))
        assert r.status_code == 200 and r.json()["results"] == []


def test_a_task_image_fetch_has_an_overall_deadline(slow_server):
    engine = ls_engine(deadline=2.0)
    from stablesam.label_studio.config import parse_config

    config = parse_config((LS_DATA / "cup_config.xml").read_text())
    task = {"id": 1, "data": {"image": f"{slow_server}/slow.jpg"}, "annotations": [{"result": [box_region(0)]}]}
    start = time.monotonic()
    with pytest.raises(InputError, match="took longer than 2 s"):
        engine.predict([task], config, None)
    assert time.monotonic() - start < 10


def test_a_task_image_fetch_is_abandoned_when_the_client_goes_away(slow_server):
    """A real server; the client sends /predict for a task whose image trickles in, then hangs
    up: the download stops within seconds (not at the 60 s deadline)."""
    import socket

    engine = ls_engine(deadline=60.0)
    from helpers import live_server
    from stablesam.label_studio import create_app

    gone = SlowImage.gone.setdefault("abandoned.jpg", threading.Event())
    task = {"id": 1, "data": {"image": f"{slow_server}/abandoned.jpg"}, "annotations": [{"result": [box_region(0)]}]}
    payload = json.dumps(ls_body([task])).encode()
    with live_server(create_app(engine)) as base:
        host, port = base.rstrip("/").rsplit("//", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
            time.sleep(1.5)  # the fetch is under way
            assert not gone.is_set()
        start = time.monotonic()
        assert gone.wait(15), "the download outlived its client"
        assert time.monotonic() - start < 15


def test_label_studio_install_lines_pin_sentry_sdk():
    """label-studio 1.23.2 with sentry-sdk 3 (what pip resolves) fails at every command."""
    lines = [line for path in (REPO / "README.md", REPO / "docs" / "usage_details.md",
                               REPO / "tests" / "test_label_studio_real.py")
             for line in path.read_text().splitlines() if "pip install label-studio" in line.replace("\"", "")
             and "label-studio-sdk" not in line and "[label-studio]" not in line]
    assert lines
    for line in lines:
        assert "label-studio==1.23.2" in line and "sentry-sdk<3" in line, line


def test_a_full_disk_at_the_overlay_names_the_overlay(tmp_path, fake_embedded, monkeypatch):
    import errno

    import stablesam.commands.segment as segment

    real = segment.image_writer

    def writer(path, array):
        if Path(path).name == "overlay.png":
            def full(f):
                raise OSError(errno.ENOSPC, "No space left on device")
            return full
        return real(path, array)

    monkeypatch.setattr(segment, "image_writer", writer)
    out = tmp_path / "out"
    out.mkdir()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["segment", str(COFFEE), "--box", "170,15,410,305", "--out", str(out / "mask.png"),
                   "--overlay", str(out / "overlay.png")])
    one_line_error(rc, err.getvalue(), "overlay.png", "No space left")
    assert "mask.png" not in err.getvalue(), err.getvalue()
    assert list(out.iterdir()) == []


def test_the_demo_refuses_a_thin_image_with_4xx(fake_embedded):
    from starlette.testclient import TestClient

    from helpers import demo_model
    from stablesam.demo import create_app

    thin = io.BytesIO()
    Image.fromarray(np.full((2, 3000, 3), 128, np.uint8)).save(thin, format="PNG")
    with TestClient(create_app(demo_model(fake_embedded))) as client:
        r = client.post("/api/images", content=thin.getvalue(), headers={"X-Filename": "thin.png"})
        assert r.status_code == 400 and "3000x2" in r.json()["error"] and "\n" not in r.json()["error"], r.text
        assert client.get("/").status_code == 200  # still serving
