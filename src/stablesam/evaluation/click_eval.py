"""The click-by-click benchmark (f-BRS / RITM protocol, see `stablesam.evaluation.clicks`): NoC@85/90,
NoF and mIoU after k clicks, per model and dataset, through the decoder only."""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..models.segmenters import SamSegmenter, Segmenter
from .clicks import number_of_clicks, run_clicks
from .evaluator import Evaluator, run_evaluator


@dataclass
class ClickConfig:
    max_clicks: int = 20
    thresholds: Sequence[float] = (0.85, 0.9)
    limit: Optional[int] = None


@dataclass
class ClickResult:
    rows: List[Dict] = field(default_factory=list)  # one per model x dataset
    objects: List[Dict] = field(default_factory=list)  # one per model x dataset x object


def parse_thresholds(text: str) -> List[float]:
    """'0.85,0.9' -> [0.85, 0.9]; ValueError naming the bad part."""
    out = []
    for part in text.split(","):
        try:
            t = float(part)
        except ValueError:
            raise ValueError(f"bad IoU threshold {part!r} in {text!r}: expected numbers in (0, 1]") from None
        if not 0 < t <= 1:
            raise ValueError(f"IoU threshold {part!r} in {text!r} is outside (0, 1]")
        out.append(t)
    return out


def threshold_name(t: float) -> str:
    return f"{round(100 * t):d}" if abs(100 * t - round(100 * t)) < 1e-9 else f"{100 * t:g}"


def check_clickable(segmenters: Sequence[Segmenter]) -> None:
    for seg in segmenters:
        if not isinstance(seg, SamSegmenter):
            raise ValueError(f"model {seg.name!r} takes no clicks: the click protocol needs a SAM or Stable-SAM SPEC")


class ClickEvaluator(Evaluator):
    """The click protocol: every object through the simulated user, for every model (embeddings
    from each model's cache)."""

    label = "clicks"

    def __init__(self, segmenters: Sequence[SamSegmenter], config: ClickConfig):
        check_clickable(segmenters)
        self.segmenters, self.config, self.limit = list(segmenters), config, config.limit

    def reset(self, datasets: Sequence) -> None:
        self.datasets = list(datasets)
        self.result = ClickResult()

    def process(self, ds, i: int, sample) -> None:
        config = self.config
        for seg in self.segmenters:
            seg.set_image(sample.image)
            seg.model.plugins_enabled = seg.plugins
            t = time.perf_counter()
            run = run_clicks(seg.predictor, sample.mask, sample.ignore, config.max_clicks)
            seconds = time.perf_counter() - t
            record = {"model": seg.name, "dataset": ds.name, "object": sample.name,
                      "clicks": " ".join(f"{c.x},{c.y},{'+' if c.positive else '-'}" for c in run.clicks),
                      "ious": " ".join(f"{v:.4f}" for v in run.ious), "seconds": round(seconds, 4)}
            for thr in config.thresholds:
                noc, failed = number_of_clicks(run.ious, thr, config.max_clicks)
                record[f"NoC@{threshold_name(thr)}"] = noc
                record[f"failed@{threshold_name(thr)}"] = failed
            self.result.objects.append(record)

    def evaluate(self) -> ClickResult:
        self.result.rows = summarize(self.result.objects, [s.name for s in self.segmenters],
                                     [d.name for d in self.datasets], self.config)
        return self.result


def evaluate_clicks(datasets: Sequence, segmenters: Sequence[SamSegmenter], config: ClickConfig,
                    progress: bool = True) -> ClickResult:
    """Run the click protocol (`ClickEvaluator`) on the datasets."""
    return run_evaluator(datasets, ClickEvaluator(segmenters, config), progress)


def summarize(objects: List[Dict], models: List[str], datasets: List[str], config: ClickConfig) -> List[Dict]:
    """Per-object runs -> one row per model x dataset: NoC and NoF per threshold, mIoU@k."""
    rows = []
    for model in models:
        for ds in datasets:
            recs = [o for o in objects if o["model"] == model and o["dataset"] == ds]
            if not recs:
                continue
            ious = np.array([[float(v) for v in o["ious"].split()] for o in recs])  # (objects, max_clicks)
            row = {"model": model, "dataset": ds, "objects": len(recs),
                   "mIoU@k": [round(float(v), 4) for v in ious.mean(0)],
                   "seconds_per_object": float(np.mean([o["seconds"] for o in recs]))}
            for thr in config.thresholds:
                name = threshold_name(thr)
                row[f"NoC@{name}"] = float(np.mean([o[f"NoC@{name}"] for o in recs]))
                row[f"NoF@{name}"] = int(sum(o[f"failed@{name}"] for o in recs))
            rows.append(row)
    return rows


def click_tables(rows: List[Dict], config: ClickConfig) -> str:
    """Markdown: one row per model x dataset."""
    names = [threshold_name(t) for t in config.thresholds]
    ks = [k for k in (1, 3, 5, 10, config.max_clicks) if k <= config.max_clicks]
    ks = sorted(set(ks))
    head = ["model", "dataset", "objects"] + [f"NoC@{n}" for n in names] + [f"NoF@{n}" for n in names] + \
        [f"mIoU@{k}" for k in ks] + ["s / object"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["dataset"], str(r["objects"])] + [f"{r[f'NoC@{n}']:.2f}" for n in names] + \
            [str(r[f"NoF@{n}"]) for n in names] + [f"{r['mIoU@k'][k - 1]:.3f}" for k in ks] + \
            [f"{r['seconds_per_object']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return (f"### Click protocol (f-BRS / RITM), up to {config.max_clicks} clicks\n\n"
            "NoC@t: mean clicks to reach IoU t (the limit when never reached); NoF@t: objects that never "
            "reach it; mIoU@k: mean IoU after k clicks.\n\n" + "\n".join(lines) + "\n")


def click_curve(rows: List[Dict], path: Path) -> bool:
    """mIoU against the number of clicks, one curve per model (per dataset panel)."""
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fileio import save_figure
    from .figures import short_name

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for r in (r for r in rows if r["dataset"] == ds):
            ks = np.arange(1, len(r["mIoU@k"]) + 1)
            ax.plot(ks, r["mIoU@k"], marker=".", label=short_name(r["model"]))
        ax.set_title(ds, fontsize=9); ax.set_xlabel("clicks"); ax.set_ylabel("mIoU")
        ax.set_ylim(0, 1); ax.grid(alpha=0.3); ax.legend(fontsize=7)
    save_figure(fig, path)
    return True
