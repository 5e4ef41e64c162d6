"""OUT/report.md of `stablesam reproduce`: the paper's headline table beside the measured one,
the scores per test set, the run's settings and estimate; OUT/results.json (every row) and
OUT/plugin.pt (the trained plugin)."""

import json
import shlex
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .. import __version__
from ..fileio import write_text
from .layout import TEST_SETS
from .paper import HEADLINE, PAPER_MODELS, SOURCE, paper_cell
from .recipe import train_argv
from .record import config_dict, copy_file


def mean_over_sets(rows: List[Dict], model: str, prompt: str, key: str = "mIoU") -> Optional[float]:
    """The mean over the test sets of `key` (a fraction) for one model and prompt type; None if
    a set lacks it."""
    values = [r[key] for r in rows if r["model"] == model and r["prompt"] == prompt and r.get(key) is not None]
    return float(np.mean(values)) if len(values) == len(TEST_SETS) else None


def pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def headline_table(rows: List[Dict], models: List[str]) -> str:
    """The paper's mIoU (%) beside the measured one, one row per prompt type."""
    head = ["prompt"] + [f"{m} (paper)" for m in PAPER_MODELS] + [f"{m} (measured)" for m in models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, prompt, paper in HEADLINE:
        cells = [f"{label} (`{prompt}`)"] + [paper_cell(paper, m) for m in PAPER_MODELS]
        cells += [pct(mean_over_sets(rows, m, prompt)) for m in models]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_set_table(rows: List[Dict], models: List[str]) -> str:
    """mIoU / mBIoU / stability (%) of every model, test set and prompt type."""
    head = ["test set", "prompt"] + [f"{m} mIoU / mBIoU / stab." for m in models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in TEST_SETS:
        for _, prompt, _ in HEADLINE:
            cells = [s.name, f"`{prompt}`"]
            for m in models:
                r = next((r for r in rows if r["model"] == m and r["dataset"] == s.name and r["prompt"] == prompt), None)
                cells.append("–" if r is None else
                             f"{pct(r['mIoU'])} / {pct(r['mBIoU'])} / {pct(r.get('stability'))}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(run) -> Path:
    """Write OUT/report.md, OUT/results.json and OUT/plugin.pt from a finished `Reproduction`."""

    c, out = run.config, run.out
    models = ["SAM", "DT", "Stable-SAM"] if c.with_dt else ["SAM", "Stable-SAM"]
    rows = run.rows()
    objects = {s.name: max((r["objects"] for r in rows if r["dataset"] == s.name), default=0) for s in TEST_SETS}
    estimate = run.state.done("estimate") or {}
    copy_file(out / "train_plugin" / "plugin.pt", out / "plugin.pt")
    settings = config_dict(c)
    text = "\n".join([
        "# Stable-SAM: the paper's experiment, reproduced",
        "",
        f"Base model: `{c.model_type}` from `{Path(c.checkpoint).name}`; data: HQSeg-44K under `{c.hqseg}`; "
        f"precision {c.precision}; stablesam {__version__}.",
        "",
        "## Headline: mIoU (%) averaged over the four test sets",
        "",
        f"Paper: {SOURCE} (SAM ViT-L). Measured: this run, {c.samples} prompts per object and prompt type "
        f"(seed {c.seed})" + (f", the first {c.limit} objects of each test set" if c.limit else "") + ".",
        "",
        headline_table(rows, models),
        "",
        "A '–' is a cell this run did not measure; HQ-SAM is not part of the run.",
        "",
        "## Per test set",
        "",
        "Objects: " + ", ".join(f"{k} {v}" for k, v in objects.items()) + ".",
        "",
        per_set_table(rows, models),
        "",
        "## Run",
        "",
        f"- plugin: `{out / 'plugin.pt'}` (load it with `--model {c.model_type}:CHECKPOINT+plugin=plugin.pt`)",
        f"- plugin training: `stablesam {shlex.join(run_train_argv(run, 'plugins'))}`",
        *([f"- DT training: `stablesam {shlex.join(run_train_argv(run, 'decoder'))}`"] if c.with_dt else []),
        f"- estimate before the run: {estimate.get('disk_gb', 0):.1f} GB of cache, {estimate.get('hours', 0):.2f} h "
        "(an estimate from the probe)",
        "- scores per set and prompt: `results.json`; stage record: `reproduce.json`",
        "",
    ])
    write_text(out / "results.json", json.dumps({"settings": settings, "rows": rows, "estimate": estimate}, indent=2))
    write_text(out / "report.md", text)
    return out / "report.md"


def run_train_argv(run, tune: str) -> List[str]:
    folder = run.out / ("train_plugin" if tune == "plugins" else "train_dt")
    return train_argv(run.config, tune, folder)
