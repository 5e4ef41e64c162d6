"""What the test modules share (no test module imports another): every SAM family's checks
(identity at init, batching, training), toy datasets and train runs, the families' small models
and files, the demo's live server, automatic-mask comparisons, folders no file can be created in
and the one-line error check. Fixtures used everywhere are in conftest.py."""

import csv
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from conftest import SMALL_ARCH, build_small_sam, perturb_plugins
from stablesam import StableSam, save_plugin
from stablesam.backends import get_backend
from stablesam.demo import bind, server, url
from stablesam.models.files import save_sam_file
from stablesam.models.spec import build_model, parse_model_spec

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None

PROMPTS = {
    "box": dict(box=np.array([40.0, 25.0, 140.0, 95.0])),
    "points": dict(point_coords=np.array([[90.0, 60.0], [20.0, 10.0]]), point_labels=np.array([1, 0])),
    "box+points": dict(
        box=np.array([40.0, 25.0, 140.0, 95.0]),
        point_coords=np.array([[90.0, 60.0]]),
        point_labels=np.array([1]),
    ),
}
BOXES = np.array([[40.0, 25.0, 140.0, 95.0], [10.0, 5.0, 170.0, 110.0], [60.0, 40.0, 100.0, 80.0]])


def assert_identity(model, stable_pred, plain_pred, prompt: str, multimask: bool, **extra) -> None:
    """Untrained Stable-X == X (low-res logits within 1e-4), plugins_enabled=False == X, and
    perturbed plugins move the output (so the first check can fail)."""
    kwargs = dict(PROMPTS[prompt], multimask_output=multimask, return_logits=True, **extra)
    ref = plain_pred.predict(**kwargs)[2]
    model.plugins_enabled = True
    model.last_alpha = None
    out = stable_pred.predict(**kwargs)[2]
    assert model.last_alpha is not None, "the plugins did not run"
    assert np.abs(out - ref).max() < 1e-4
    state = model.plugin_state_dict()
    perturb_plugins(model)
    moved = stable_pred.predict(**kwargs)[2]
    plain_after = plain_pred.predict(**kwargs)[2]  # X's own predictor, trained-looking plugins attached
    model.plugins_enabled = False
    off = stable_pred.predict(**kwargs)[2]
    model.plugins_enabled = True
    model.load_plugin_state_dict(state)
    assert np.abs(moved - ref).max() > 1e-2
    assert np.abs(off - ref).max() < 1e-6
    assert np.array_equal(plain_after, ref)  # wrapping leaves X's own predictor unchanged


def assert_batch_equals_singles(model, stable_pred) -> None:
    perturb_plugins(model, scale=0.1)
    masks, scores, logits = stable_pred.predict_batch(boxes=BOXES, multimask_output=False, return_logits=True)
    alpha = stable_pred.routing["alpha"]
    assert alpha.shape == (len(BOXES), 2)
    for i, box in enumerate(BOXES):
        m, s, low = stable_pred.predict(box=box, multimask_output=False, return_logits=True)
        assert np.abs(low - logits[i]).max() < 1e-4
        assert np.abs(s - scores[i]).max() < 1e-4
        assert np.abs(stable_pred.routing["alpha"][0] - alpha[i]).max() < 1e-5


def assert_one_step_trains_only_plugins(model, embedding, boxes: torch.Tensor) -> None:
    """One Adam step on a decode loss changes plugin weights and nothing of the base model."""
    base_before = {k: v.clone() for k, v in model.sam.state_dict().items()}
    plugin_before = model.plugin_state_dict()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(any(p is q for q in model.plugin_parameters()) for p in params)
    opt = torch.optim.Adam(params, lr=1e-3)
    low, _ = model.decode(embedding.features, boxes=boxes, extras=embedding.extras)
    target = torch.zeros_like(low)
    target[..., 10:40, 10:50] = 1
    loss = F.binary_cross_entropy_with_logits(low, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    for k, v in model.sam.state_dict().items():
        assert torch.equal(v, base_before[k]), k
    after = model.plugin_state_dict()
    assert any(not torch.equal(after[k], plugin_before[k]) for k in after)


def make_folder(root, n=3, size=(60, 80)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        mask = np.zeros(size, np.uint8)
        mask[10 + i : 40 + i, 15 : 50 + 3 * i] = 255
        Image.fromarray(img).save(root / "images" / f"im{i}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    return root


SRC = str(Path(__file__).resolve().parents[1] / "src")


def losses(out):
    with open(out / "log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def run(args, **kw):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "stablesam", *args], env=env, capture_output=True, text=True, **kw)


@pytest.fixture
def train_setup(tmp_path):
    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    return sam_file, make_folder(tmp_path / "toy", n=4), tmp_path


def train_args(sam_file, data, out, *extra):
    return ["train", "--data", str(data), "--model", f"sam:{sam_file}", "--out", str(out),
            "--cache", str(out.parent / "cache"), *map(str, extra)]


def small_sam_config():
    from transformers import SamConfig

    return SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=256,
                           mlp_dim=64, global_attn_indexes=[0], window_size=0, initializer_range=0.02),
        prompt_encoder_config=dict(image_size=256),
    )


def torch_default_init(model) -> None:
    """PyTorch's own layer init (what segment_anything and sam2 models get) instead of
    transformers' near-zero one, so the decoder's logits have SAM's scale."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                torch.nn.init.kaiming_uniform_(p, a=5 ** 0.5)


def family_files(tmp, family):
    """(SPEC of the base model, SPEC with a perturbed plugin of that family)."""
    torch.manual_seed(0)
    if family == "hq":
        pytest.importorskip("segment_anything_hq", reason="needs the [hq] extra")
        path, head = tmp / "sam_hq_vit_tiny.pth", "hq_vit_tiny"
        torch.save(get_backend("hq").build(head).state_dict(), path)
    elif family == "sam2":
        pytest.importorskip("sam2", reason="needs the [sam2] extra")
        path, head = tmp / "sam2.1_hiera_tiny.pt", "sam2.1_hiera_t"
        torch.save({"model": get_backend("sam2").build(head).state_dict()}, path)
    else:
        pytest.importorskip("transformers", reason="needs the [hf] extra")
        from transformers import SamModel

        path, head = tmp / "hf_sam", "hf"
        model = SamModel(small_sam_config())
        torch_default_init(model)
        model.save_pretrained(path)
    base = f"{head}:{path}"
    model = StableSam(get_backend(family).load(head, path, torch.device("cpu")))
    perturb_plugins(model, scale=0.05)
    plugin = tmp / f"{family}_plugin.pt"
    save_plugin(model, plugin, base_name=f"{head}:{path.name}")
    return base, f"{base}+plugin={plugin}"


LOOSE = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)  # random weights: keep masks


def assert_same_records(ours, theirs):
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys() == FIELDS
        assert np.array_equal(a["segmentation"], b["segmentation"])
        for key in FIELDS - {"segmentation"}:
            assert a[key] == b[key], key


def assert_same_types(ours, theirs):
    assert ours and theirs
    for a in ours:
        assert a.keys() == FIELDS
        for key in FIELDS:
            assert type(a[key]) is type(theirs[0][key]), key
        seg = a["segmentation"]
        assert seg.dtype == theirs[0]["segmentation"].dtype and seg.shape == theirs[0]["segmentation"].shape
        assert seg.sum() == a["area"]


def demo_model(fake_embedded):
    """The embedded Stable-SAM as the tests' fixture makes it: a small SAM with a perturbed plugin."""
    return build_model(parse_model_spec("tiny-stable-sam"), "cpu")


def watch_overlap(module) -> list:
    """Wrap module.forward so that the returned one-item list holds the most calls ever in
    flight at once (each call lingers 5 ms, so unlocked concurrent calls would overlap)."""
    inside, overlap = [0], [0]
    forward = module.forward

    def watched(*args, **kwargs):
        inside[0] += 1
        overlap[0] = max(overlap[0], inside[0])
        time.sleep(0.005)
        try:
            return forward(*args, **kwargs)
        finally:
            inside[0] -= 1

    module.forward = watched
    return overlap


@contextmanager
def live_server(app) -> Iterator[str]:
    """The app served by uvicorn in a background thread on a free port; yields its URL."""
    sock = bind("127.0.0.1", 0)
    srv = server(app, log_level="warning")
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the demo server did not start"
        time.sleep(0.02)
    try:
        yield url(sock)
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def post(base: str, path: str, body, json_body: bool = True) -> tuple:
    data = json.dumps(body).encode() if json_body else body
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"} if json_body else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


CHROMIUM = Path("/usr/bin/chromium")


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


KINDS = ("under-a-file", "proc", "read-only")


def unwritable_folder(tmp_path: Path, kind: str) -> Path:
    """A folder path where no file can be created: below a regular file, in /proc, or a
    read-only folder (skipped where chmod does not bind: as root)."""
    if kind == "under-a-file":
        (tmp_path / "a-file").write_text("not a folder")
        return tmp_path / "a-file" / "sub"
    if kind == "proc":
        if not os.path.isdir("/proc/self"):
            pytest.skip("no /proc on this system")
        return Path("/proc")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0 or os.access(folder, os.W_OK):
        pytest.skip("chmod does not stop this user from writing (root): covered by under-a-file and proc")
    return folder


def one_line_error(rc: int, err: str, *words: str) -> None:
    """Exit code 2 and one line on stderr, naming each of `words`."""
    assert rc == 2 and len(err.splitlines()) == 1 and ": error: " in err, err
    assert "Traceback" not in err and all(w in err for w in words), err


def leftovers(folder: Path) -> list:
    """Files a failed write may have left: temporaries and probes."""
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".old")) or p.name.startswith(".stablesam-probe")]


FIELDS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}


class PlainHf:
    """The reference for `hf:` models (SamModel, Sam2Model, Sam3TrackerModel): the transformers
    model's own forward on an `Embedding`."""

    def __init__(self, model, emb):
        self.model, self.emb = model, emb
        self.transform = get_backend("hf").prompt_transform(model)

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True, return_logits=True):
        size = self.emb.original_size
        kwargs = {}
        if point_coords is not None:
            kwargs["input_points"] = torch.tensor(self.transform.apply_coords(point_coords, size), dtype=torch.float)[None, None]
            kwargs["input_labels"] = torch.tensor(point_labels, dtype=torch.int)[None, None]
        if box is not None:
            kwargs["input_boxes"] = torch.tensor(self.transform.apply_boxes(box, size), dtype=torch.float)[None]
        feats = [*self.emb.extras["high_res_feats"], self.emb.features] if self.emb.extras else self.emb.features
        with torch.no_grad():
            out = self.model(image_embeddings=feats, multimask_output=multimask_output, **kwargs)
        return None, out.iou_scores[0, 0].numpy(), out.pred_masks[0, 0].numpy()
