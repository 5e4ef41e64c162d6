"""What `stablesam eval` writes: results.json, results.md, per_object.csv and two figures."""

import csv
import io
import json
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..fileio import save_figure, write_text
from ..prompts.generation import parse_prompt
from .figures import draw_prompt, short_name, view_window
from .prompt_eval import OPTIONAL_SCORES, EvalResult
from .worst_case import worst_case_rows, worst_case_table

METRICS = (("mIoU", "mIoU"), ("mBIoU", "mBIoU"), ("stability", "stability (mean pairwise IoU)"),
           ("attention_inside", "mask token's layer-2 attention inside the object (share of its mass)"),
           ("alpha1", "routing weight α1 on the deformed features (DRP; mean over the prompts)"))


def markdown_tables(result: EvalResult, models: List[str]) -> str:
    """One comparison table per dataset and metric, prompts as rows, models side by side."""
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in result.rows):
        rows = [r for r in result.rows if r["dataset"] == ds]
        prompts = list(dict.fromkeys(r["prompt"] for r in rows))
        n = max(r["objects"] for r in rows)
        out.append(f"### {ds} ({n} objects)\n")
        for key, title in METRICS:
            if not any(r.get(key) is not None for r in rows) and key in OPTIONAL_SCORES:
                continue  # attention only with --explain, α1 only for Stable-SAM
            out.append(f"**{title}**\n")
            out.append("| prompt | " + " | ".join(models) + " |")
            out.append("|---|" + "---|" * len(models))
            for prompt in prompts:
                cells = []
                for m in models:
                    r = next((r for r in rows if r["model"] == m and r["prompt"] == prompt), None)
                    v = None if r is None else r.get(key)
                    cells.append("—" if v is None else f"{v:.3f}")
                out.append(f"| {prompt} | " + " | ".join(cells) + " |")
            means = []
            for m in models:
                vals = [r[key] for r in rows if r["model"] == m and r.get(key) is not None]
                means.append(f"{np.mean(vals):.3f}" if vals else "—")
            out.append("| *mean over prompts* | " + " | ".join(means) + " |\n")
    if result.skipped:
        notes = "; ".join(f"{m} cannot take {', '.join(p)}" for m, p in result.skipped.items())
        out.append(f"— : no row (the model cannot take that prompt type: {notes}). "
                   "Stability needs K > 1 prompts, so gt-box (one prompt) has none.\n")
    out.append(worst_case_table(result.rows, result.too_small))
    return "\n".join(out)


def write_csv(path: Path, objects: List[Dict]) -> None:
    """One row per record; the columns are the union of the records' keys in first-seen order
    (prompt records and click records share model, dataset and object)."""
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for o in objects for k in o))
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for o in objects:
        writer.writerow({k: ("" if o.get(k) is None else o[k]) for k in fields})
    write_text(path, buf.getvalue())


def noise_curve(result: EvalResult, models: List[str], path: Path) -> bool:
    """mIoU and stability vs box-noise scale, one line per model (datasets averaged)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def scale(prompt: str) -> Optional[float]:
        p = parse_prompt(prompt)
        return 0.0 if p.kind == "gt-box" else (p.value if p.kind == "noisy-box" else None)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    drawn = False
    for m in models:
        for ax, key in zip(axes, ("mIoU", "stability")):
            pts: Dict[float, List[float]] = {}
            for r in result.rows:
                s = scale(r["prompt"])
                if r["model"] == m and s is not None and r[key] is not None:
                    pts.setdefault(s, []).append(r[key])
            if len(pts) >= 1:
                xs = sorted(pts)
                ax.plot(xs, [np.mean(pts[x]) for x in xs], marker="o", label=short_name(m))
                drawn = True
    if not drawn:
        plt.close(fig)
        return False
    for ax, title in zip(axes, ("mIoU", "stability (mean pairwise IoU of the K masks)")):
        ax.set_xlabel("box noise scale s (0 = ground-truth box)")
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
    return True


def example_sheet(result: EvalResult, models: List[str], path: Path) -> bool:
    """Rows: (object, prompt); columns: ground truth with the prompt, then each model's mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(ex, p) for ex in result.examples for p in ex["prompts"]]
    if not rows:
        return False
    cols = 1 + len(models)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.6 * cols, 2.2 * len(rows)), squeeze=False)
    for r, (ex, prompt) in enumerate(rows):
        panels = [("ground truth", ex["mask"])] + [(m, ex["pred"].get((m, prompt))) for m in models]
        window = view_window(ex["mask"], ex["prompts"][prompt])
        for c, (title, mask) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(ex["image"])
            if mask is not None:
                overlay = np.zeros((*mask.shape, 4))
                overlay[mask] = (0.1, 0.4, 1.0, 0.55)
                ax.imshow(overlay)
                # a searched prompt type: each model's own prompt (the base box dashed) and its IoU
                draw_prompt(ax, ex.get("model_prompts", {}).get((title, prompt), ex["prompts"][prompt]))
                if (title, prompt) in ex.get("iou", {}):
                    draw_prompt(ax, ex["prompts"][prompt], dashed=True)
                    ax.text(0.02, 0.98, f"IoU {ex['iou'][(title, prompt)]:.2f}", transform=ax.transAxes, va="top",
                            fontsize=7, color="white", backgroundcolor="black")
            else:
                ax.text(0.5, 0.5, "cannot take\nthis prompt", ha="center", va="center",
                        transform=ax.transAxes, color="white", backgroundcolor="black")
            ax.set_xlim(window[0], window[2]); ax.set_ylim(window[3], window[1])
            ax.set_xticks([]); ax.set_yticks([])
            ax.set_title(textwrap.fill(short_name(title), 26) if r == 0 else "", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{ex['name'][:18]}\n{prompt}", fontsize=7)
    save_figure(fig, path)
    return True


def write_reports(result: Optional[EvalResult], models: List[str], out: Path, meta: Dict,
                  clicks=None, click_config=None) -> Dict[str, Path]:
    """results.json, results.md, per_object.csv and the figures of a prompt benchmark (`result`)
    and/or a click benchmark (`clicks`, a click_eval.ClickResult run with `click_config`)."""
    from .click_eval import click_curve, click_tables

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out / "results.json", "md": out / "results.md", "csv": out / "per_object.csv",
        "curve": out / "noise_curve.png", "examples": out / "examples.png", "clicks": out / "click_curve.png",
    }
    summary = {"rows": result.rows if result else [], **meta, "skipped": result.skipped if result else {}}
    if result is not None and worst_case_rows(result.rows):
        summary.update(worst_case=worst_case_rows(result.rows), too_small=result.too_small)
    if clicks is not None:
        summary["clicks"] = {"max_clicks": click_config.max_clicks, "thresholds": list(click_config.thresholds),
                             "rows": clicks.rows}
    write_text(files["json"], json.dumps(summary, indent=2))
    header = f"Command: `{meta['command']}`\n\n"
    if result is not None:
        header += f"K = {meta['samples']} prompts per object and prompt type, seed {meta['seed']}.\n\n"
    if meta.get("bad_files"):
        header += f"{len(meta['bad_files'])} bad files or objects were skipped (see bad_files in results.json).\n\n"
    body = markdown_tables(result, models) if result is not None else ""
    if clicks is not None:
        body += "\n" + click_tables(clicks.rows, click_config)
    write_text(files["md"], header + body)
    records = [{"protocol": "prompts", **o} for o in (result.objects if result else [])]
    records += [{"protocol": "clicks", **o} for o in (clicks.objects if clicks is not None else [])]
    write_csv(files["csv"], records)
    if result is None or not noise_curve(result, models, files["curve"]):
        files.pop("curve")
    if result is None or not example_sheet(result, models, files["examples"]):
        files.pop("examples")
    if clicks is None or not click_curve(clicks.rows, files["clicks"]):
        files.pop("clicks")
    if result is not None and any(ex.get("attention") for ex in result.examples):
        from .explain import explain_sheet

        files["explain"] = out / "explain.png"
        if not explain_sheet(result, models, files["explain"]):
            files.pop("explain")
    return files
