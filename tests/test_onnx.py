"""ONNX export of the prompt path: onnxruntime vs PyTorch, plugins on and off, SAM's own export."""

import io
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import build_small_sam, perturb_plugins  # noqa: E402
from stablesam import StableSam, StableSamPredictor  # noqa: E402
from stablesam.cli import main  # noqa: E402
from stablesam.models.spec import build_model, parse_model_spec  # noqa: E402
from stablesam.export.onnx_export import (  # noqa: E402
    DYNAMIC_AXES, INPUT_NAMES, OUTPUT_NAMES, TRACING_EXPORTER, StableSamOnnxModel, example_inputs, export_bytes,
    export_onnx,
)
from stablesam.export.onnx_verify import PROMPT_KINDS, onnx_prompt  # noqa: E402

TOL = 1e-3
SIZES = [(120, 180), (301, 200)]  # the second has another aspect ratio than the export's example input


def small_model() -> StableSam:
    model = StableSam(build_small_sam()).eval()
    perturb_plugins(model)
    return model


def embedded_model() -> StableSam:
    return build_model(parse_model_spec("tiny-stable-sam"), "cpu").eval()


class Exported:
    """One model, exported with plugins on and off, with an onnxruntime session for each."""

    def __init__(self, model: StableSam):
        self.model = model
        self.sessions = {}
        for plugins in (True, False):
            model.plugins_enabled = plugins
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.sessions[plugins] = ort.InferenceSession(export_bytes(model), options,
                                                          providers=["CPUExecutionProvider"])
        model.plugins_enabled = True

    def run(self, plugins: bool, inputs):
        self.model.plugins_enabled = plugins
        wrapper = StableSamOnnxModel(self.model).eval()
        ref = [t.numpy() for t in wrapper(*(torch.from_numpy(v) for v in inputs.values()))]
        got = self.sessions[plugins].run(None, inputs)
        self.model.plugins_enabled = True
        return ref, got


@pytest.fixture(scope="module")
def exported():
    return {"small": Exported(small_model()), "embedded": Exported(embedded_model())}


def max_diff(ref, got):
    assert [a.shape for a in ref] == [b.shape for b in got]
    return max(float(np.abs(a - b).max()) for a, b in zip(ref, got))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", PROMPT_KINDS)
@pytest.mark.parametrize("plugins", [True, False], ids=["plugins-on", "plugins-off"])
@pytest.mark.parametrize("which", ["small", "embedded"])
def test_onnx_matches_pytorch(exported, which, plugins, kind, size):
    rng = np.random.default_rng([PROMPT_KINDS.index(kind), SIZES.index(size), which == "small"])
    for num_points in (1, 4):  # the point axis is dynamic
        inputs = onnx_prompt(exported[which].model, kind, size, rng, num_points)
        ref, got = exported[which].run(plugins, inputs)
        assert max_diff(ref, got) < TOL
        masks, iou, low_res, alpha = got
        assert masks.shape == (1, 1, *size) and iou.shape == (1, 1) and alpha.shape == (1, 2)
        assert low_res.shape == (1, 1, *exported[which].model.sam.prompt_encoder.mask_input_size)
        if not plugins:
            assert np.array_equal(alpha, [[0.0, 1.0]])


@pytest.mark.parametrize("which", ["small", "embedded"])
def test_plugins_are_in_the_graph(exported, which):
    """The plugins-on file computes something else than the plugins-off file."""
    inputs = onnx_prompt(exported[which].model, "box", SIZES[0], np.random.default_rng(3))
    on = exported[which].sessions[True].run(None, inputs)
    off = exported[which].sessions[False].run(None, inputs)
    assert np.abs(on[2] - off[2]).max() > 1e-2
    assert np.allclose(on[3].sum(), 1) and not np.allclose(on[3], [[0.0, 1.0]])


def test_dynamic_number_of_points(exported):
    e = exported["small"]
    rng = np.random.default_rng(7)
    for n in range(1, 9):
        inputs = onnx_prompt(e.model, "points", SIZES[1], rng, n)
        assert inputs["point_coords"].shape == (1, n + 1, 2)
        ref, got = e.run(True, inputs)
        assert max_diff(ref, got) < TOL


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("plugins", [True, False], ids=["plugins-on", "plugins-off"])
def test_wrapper_computes_what_the_predictor_computes(image, plugins, multimask):
    """The exported computation is Stable-SAM's: the PyTorch wrapper equals StableSamPredictor."""
    model = small_model()
    model.plugins_enabled = plugins
    pred = StableSamPredictor(model)
    pred.set_image(image)
    box = np.array([40.0, 25.0, 140.0, 95.0])
    clicks, labels = np.array([[90.0, 60.0]]), np.array([1])
    ref = pred.predict(clicks, labels, box, multimask_output=multimask, return_logits=True)
    coords = pred.transform.apply_coords(np.concatenate([clicks, box.reshape(2, 2)]), image.shape[:2])
    inputs = [pred.features, torch.tensor(coords[None], dtype=torch.float), torch.tensor([[1.0, 2.0, 3.0]]),
              torch.zeros(1, 1, 64, 64), torch.tensor([0.0]), torch.tensor(image.shape[:2], dtype=torch.float)]
    masks, iou, low_res, alpha = StableSamOnnxModel(model, return_single_mask=False)(*inputs)
    pick = slice(1, None) if multimask else slice(0, 1)
    assert torch.allclose(low_res[0, pick], torch.from_numpy(ref[2]), atol=1e-5)
    assert torch.allclose(iou[0, pick], torch.from_numpy(ref[1]), atol=1e-6)
    assert torch.allclose(masks[0, pick], torch.from_numpy(ref[0]), atol=1e-4)
    if plugins:
        assert torch.allclose(alpha, torch.from_numpy(pred.routing["alpha"]))


@pytest.mark.parametrize("size", SIZES)
def test_plugins_off_equals_sams_own_export(exported, size):
    """With plugins off, the file equals segment_anything's SamOnnxModel export. (segment-anything
    1.0 freezes the example input's aspect ratio into its crop, so its file is exported with
    an example of each tested size.)"""
    from segment_anything.utils.onnx import SamOnnxModel

    e = exported["small"]
    sam_onnx = SamOnnxModel(e.model.sam, return_single_mask=True).eval()
    example = example_inputs(e.model, orig_size=size)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # tracer warnings from SamOnnxModel
        warnings.simplefilter("ignore")
        torch.onnx.export(sam_onnx, tuple(example.values()), buf, **TRACING_EXPORTER, opset_version=17,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES[:3]),
                          dynamic_axes=DYNAMIC_AXES)
    sam_session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    for kind in PROMPT_KINDS:
        inputs = onnx_prompt(e.model, kind, size, rng, 3)
        theirs = sam_session.run(None, inputs)
        ours = e.sessions[False].run(None, inputs)
        assert len(theirs) == 3 and len(ours) == 4
        for a, b in zip(theirs, ours[:3]):
            assert a.shape == b.shape and np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize("opset", [12, 16, 20])
def test_other_opsets(opset):
    model = small_model()
    session = ort.InferenceSession(export_bytes(model, opset), providers=["CPUExecutionProvider"])
    inputs = onnx_prompt(model, "box+points", SIZES[1], np.random.default_rng(opset), 2)
    ref = [t.numpy() for t in StableSamOnnxModel(model)(*(torch.from_numpy(v) for v in inputs.values()))]
    assert max_diff(ref, session.run(None, inputs)) < TOL


def test_multimask_and_quantized_export(tmp_path):
    model = small_model()
    plain, quantized = tmp_path / "d.onnx", tmp_path / "q.onnx"
    export_onnx(model, plain, multimask=True)
    export_onnx(model, quantized, multimask=True, quantize=True)
    assert quantized.stat().st_size < plain.stat().st_size / 2
    inputs = onnx_prompt(model, "points", SIZES[0], np.random.default_rng(0), 2)
    a = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, inputs)
    b = ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"]).run(None, inputs)
    assert a[0].shape == b[0].shape == (1, 4, *SIZES[0]) and a[3].shape == b[3].shape == (1, 2)
    assert not list(tmp_path.glob("*.tmp"))


def run_cli(capsys, *args):
    rc = main(["export-onnx", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_export_and_verify(tmp_path, capsys):
    out = tmp_path / "decoder.onnx"
    rc, stdout, err = run_cli(capsys, "--model", "tiny-stable-sam", "--out", out, "--verify", "--verify-prompts", 4)
    assert rc == 0, err
    assert out.is_file() and "plugins on" in stdout and "alpha" in stdout
    line = next(x for x in stdout.splitlines() if x.startswith("max |Δ| vs PyTorch"))
    diffs = [float(v.split()[-1]) for v in line.split(":", 1)[1].split("(")[0].split(",")]
    assert len(diffs) == 4 and max(diffs) < TOL and "(ok" in line
    assert "time per prompt" in stdout and "onnxruntime" in stdout
    rc, stdout, err = run_cli(capsys, "--model", "tiny-stable-sam", "--plugins", "off", "--out", out, "--force")
    assert rc == 0 and "plugins off" in stdout


@pytest.mark.parametrize("args,message", [
    (["--out", "decoder.txt"], "must end in .onnx"),
    (["--out", "d.onnx", "--opset", "9"], "opsets 12..20"),
    (["--out", "d.onnx", "--model", "tiny-sam", "--plugins", "on"], "has no plugin"),
    (["--out", "d.onnx", "--model", "grabcut"], "SAM model SPEC"),
    (["--out", "d.onnx", "--model", "vit_b:/no/such.pth"], "checkpoint not found"),
    (["--out", "d.onnx", "--model", "tiny-stable-sam-strong"], "selector 'iou-box'"),
    (["--out", "d.onnx", "--model", "tiny-stable-sam-single"], "refine 'box'"),
])
def test_cli_bad_inputs(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_cli_without_onnxruntime(tmp_path, capsys, monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name.startswith("onnxruntime"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    out = tmp_path / "d.onnx"
    rc, _, err = run_cli(capsys, "--out", out, "--verify")
    assert rc == 2 and 'pip install "stable-segment-anything[onnx]"' in err and "onnxruntime" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
