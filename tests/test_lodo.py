"""scripts/lodo.py end to end on a miniature: two toy sets, a small SAM, one plugin and one DT
variant trained for a few steps: every fold trains and scores, the table is written, a rerun
resumes (nothing retrained or rescored) and a changed variant is refused."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from conftest import SMALL_ARCH, build_small_sam
from stablesam.models.files import save_sam_file
from helpers import make_folder

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lodo", REPO / "scripts" / "lodo.py")
lodo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lodo)

PROMPTS = "gt-box,noisy-box@0.2,noisy-box@0.4,points@1,points@3"


@pytest.fixture
def study(tmp_path):
    sam_file = tmp_path / "small_sam.pt"
    save_sam_file(build_small_sam(), SMALL_ARCH, sam_file)
    sets = [make_folder(tmp_path / name, n=3) for name in ("alpha", "beta")]
    (tmp_path / "train.txt").write_text("# toy split\nalpha/im0\nalpha/im1\nbeta/im0\nbeta/im1\n")
    (tmp_path / "val.txt").write_text("alpha/im2\nbeta/im1\nbeta/im2\n")
    args = ["--data", *map(str, sets), "--model", f"sam:{sam_file}", "--train-split", str(tmp_path / "train.txt"),
            "--eval-split", str(tmp_path / "val.txt"), "--samples", "3", "--prompts", PROMPTS,
            "--variant", "plugins=--steps 2 --batch-size 2 --consistency 1 --routing-inputs prompt",
            "--variant", "dt=--tune decoder --steps 2 --batch-size 2 --lr 1e-4",
            "--derived", "plugins_iou=plugins:selector=iou,selector_margin=0.01",
            "--derived", "sam_refine=plugins:weights=untrained,refine=box,refine_margin=0.05",
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "lodo")]
    return tmp_path, args


def test_lodo_runs_every_fold_writes_the_table_and_resumes(study, monkeypatch, capsys):
    tmp, args = study
    assert lodo.main(args) == 0
    out = tmp / "lodo"
    report = json.loads((out / "lodo.json").read_text())
    assert set(report["base"]) == {"alpha", "beta"}
    assert report["base"]["beta"]["gt-box"]["objects"] == 2  # the held-out set's --eval-split objects
    for name in ("plugins", "dt"):
        variant = report["variants"][name]
        assert set(variant["folds"]) == {"alpha", "beta"} and variant["finished"] == "2 of 2 folds"
        for fold in variant["folds"].values():
            assert set(fold["scores"]) == set(PROMPTS.split(","))
            assert all(fold[k] is not None for k in ("d_gt", "d_noisy", "d_click", "d_mean", "d_stability"))
        mean = variant["mean"]
        assert mean["d_gt"] == pytest.approx(sum(f["d_gt"] for f in variant["folds"].values()) / 2)
        assert variant["worst"]["d_mean"]["value"] == min(f["d_mean"] for f in variant["folds"].values())
    # α per prompt type for the plugins (DRP), none for the tuned decoder
    alpha = report["variants"]["plugins"]["mean"]["alpha"]
    assert set(alpha) == set(PROMPTS.split(",")) and all(0 < a < 1 for a in alpha.values())
    assert all(a is None for a in report["variants"]["dt"]["mean"]["alpha"].values())
    assert (out / "alpha" / "plugins" / "train" / "plugin.pt").is_file()
    # the derived variant: the trained plugin's file with the output selector, scored on every fold
    from stablesam.models.files import read_plugin

    derived = read_plugin(out / "alpha" / "plugins_iou" / "plugin.pt")
    assert derived["config"].selector == "iou" and derived["config"].selector_margin == 0.01
    trained_plugin = read_plugin(out / "alpha" / "plugins" / "train" / "plugin.pt")
    assert all((derived["state_dict"][k] == v).all() for k, v in trained_plugin["state_dict"].items())
    assert report["variants"]["plugins_iou"]["finished"] == "2 of 2 folds"
    # weights=untrained: a fresh plugin (SAM itself) with refinement, to score the option alone
    refine_only = read_plugin(out / "alpha" / "sam_refine" / "plugin.pt")
    assert refine_only["config"].refine == "box" and refine_only["config"].refine_margin == 0.05
    from set_plugin_options import untrained_state

    fresh = untrained_state(refine_only["config"])
    assert set(fresh) == set(trained_plugin["state_dict"])
    assert all(torch.equal(refine_only["state_dict"][k], v) for k, v in fresh.items())
    assert not all(torch.equal(fresh[k], v) for k, v in trained_plugin["state_dict"].items())
    assert report["variants"]["sam_refine"]["finished"] == "2 of 2 folds"
    assert (out / "beta" / "dt" / "train" / "decoder.pt").is_file()
    trained = json.loads((out / "alpha" / "plugins" / "train" / "config.json").read_text())
    assert trained["data"] == ["beta"] and trained["terms"]["consistency"] == 1.0  # alpha held out
    table = (out / "lodo.md").read_text()
    for text in ("| plugins | alpha |", "| **plugins** | **mean** (2 of 2) |", "| **dt** | **worst** |",
                 "| Δ gt-box | Δ noisy-box@0.4 | gap closed |"):
        assert text in table
    capsys.readouterr()

    # a rerun finds everything done: no training, no evaluation
    def boom(argv):
        raise AssertionError(f"ran again: {argv}")

    monkeypatch.setattr(lodo, "stablesam", boom)
    assert lodo.main(args) == 0
    assert json.loads((out / "lodo.json").read_text())["variants"] == report["variants"]
    # --table-only runs nothing, not even a variant never trained; the table keeps what finished
    assert lodo.main([*args, "--variant", "fresh=--steps 1", "--table-only"]) == 0
    assert not (out / "alpha" / "fresh").exists()
    assert json.loads((out / "lodo.json").read_text())["variants"] == report["variants"]
    # an interrupted training resumes (its checkpoint is kept, its weights not written yet)
    (out / "beta" / "plugins" / "train" / "plugin.pt").unlink()
    calls = []
    monkeypatch.setattr(lodo, "stablesam", lambda argv: calls.append(argv) or 0)
    assert lodo.main(args) == 0
    assert len(calls) == 1 and calls[0][0] == "train" and "--resume" in calls[0] and calls[0][2].endswith("alpha")
    monkeypatch.undo()
    assert lodo.main(args) == 0 and (out / "beta" / "plugins" / "train" / "plugin.pt").is_file()
    capsys.readouterr()
    # a variant changed under the same name is refused
    changed = [a.replace("--lr 1e-4", "--lr 1e-3") for a in args]
    assert lodo.main(changed) == 2
    assert "other arguments" in capsys.readouterr().err


def test_lodo_refuses_bad_studies(study, capsys):
    tmp, args = study
    data = args[args.index("--data") + 1:args.index("--model")]
    assert lodo.main(["--data", data[0], "--out", str(tmp / "x")]) == 2
    assert lodo.main(["--data", *data, "--model", "tiny-sam+plugin=p.pt", "--out", str(tmp / "x")]) == 2
    assert lodo.main(["--data", *data, "--variant", "a=--data y", "--out", str(tmp / "x")]) == 2
    assert lodo.main(["--data", *data, "--variant", "a=--no-such-option", "--out", str(tmp / "x")]) == 2
    assert lodo.main(["--data", *data, "--variant", "base=--steps 1", "--out", str(tmp / "x")]) == 2
    assert lodo.main(["--data", *data, "--folds", "gamma", "--out", str(tmp / "x")]) == 2
    dt = ["--variant", "dt=--tune decoder --steps 1"]
    assert lodo.main(["--data", *data, *dt, "--derived", "d=dt:selector=iou", "--out", str(tmp / "x")]) == 2
    assert lodo.main(["--data", *data, "--variant", "p=--steps 1", "--derived", "d=p:selector=vote",
                      "--out", str(tmp / "x")]) == 2
    err = capsys.readouterr().err
    for text in ("at least two", "must not carry", "set by this script", "does not accept", "not 'base'", "gamma",
                 "plugin --variants []",
                 "selector must be one of"):
        assert text in err
