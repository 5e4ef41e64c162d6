import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything.modeling import Sam

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Set to a file path, pytest appends there one JSON line {"nodeid", "reason", "extra"} per
# skipped test or module; "extra" is true when the reason is a missing optional extra or Debian's
# chromium (the reason names it: "needs the [hq] extra", "needs Debian's chromium"), and
# `.ci/run` reruns those once it has installed them.
SKIP_LOG = "STABLESAM_SKIP_LOG"
MISSING_EXTRA = re.compile(r"\[(hq|hf|sam2|sam3|label-studio|napari|ray|fiftyone)\] extra|chromium|Xvfb")


@pytest.fixture(autouse=True)
def seed_everything():
    """Every test starts from the same global RNG state, whatever ran before it (order- and
    environment-independent results); tests that need other seeds set their own."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def _log_skip(report) -> None:
    path = os.environ.get(SKIP_LOG)
    if path and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        with open(path, "a") as f:
            f.write(json.dumps({"nodeid": report.nodeid, "reason": reason,
                                "extra": bool(MISSING_EXTRA.search(reason))}) + "\n")


def pytest_collectreport(report) -> None:  # a module skipped whole (importorskip at its top)
    _log_skip(report)


def pytest_runtest_logreport(report) -> None:  # skipped in setup (skipif, importorskip in a fixture) or in the test
    _log_skip(report)


SMALL_ARCH = {"encoder": "vit", "img_size": 256, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2}


def build_small_sam(seed: int = 0, img_size: int = 256) -> Sam:
    """A random-init Sam with a one-block ViT encoder and SAM's standard prompt encoder and
    256-d decoder: the smallest SAM that exercises every plugin code path."""
    from stablesam.modeling.small_sam import build_small_sam as build

    torch.manual_seed(seed)
    return build({**SMALL_ARCH, "img_size": img_size})


@pytest.fixture
def small_sam() -> Sam:
    return build_small_sam()


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(120, 180, 3), dtype=np.uint8)
    img[30:90, 50:130] = (200, 40, 40)  # an "object"
    return img


def perturb_plugins(model, seed: int = 1, scale: float = 0.2) -> None:
    """Move every plugin weight away from its identity init (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.plugin_parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture
def fake_embedded(monkeypatch, tmp_path):
    """Make `tiny-sam` / `tiny-stable-sam` resolve to a small random-init SAM (+ a plugin)."""
    import stablesam.models.embedded as embedded
    from stablesam import StableSam, save_plugin

    plugin = tmp_path / "small_plugin.pt"
    model = StableSam(build_small_sam())
    perturb_plugins(model, scale=0.05)
    save_plugin(model, plugin, base_name="small-test-sam")
    monkeypatch.setattr(embedded, "embedded_available", lambda: True)
    monkeypatch.setattr(embedded, "load_embedded_sam", lambda device="cpu": (build_small_sam().to(device), plugin))
    return plugin
