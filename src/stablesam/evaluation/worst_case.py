"""The searched prompt types in the benchmark: each model's own worst (or best) box and click
per object (`stablesam.prompts.adversarial`), and BREPS's IoU-Min / IoU-Base / IoU-Max table."""

from typing import Dict, List, Optional, Tuple

import numpy as np

from ..prompts.adversarial import Objective, SearchResult, search_prompt
from .metrics import boundary_iou, mask_iou
from ..models.segmenters import Segmenter
from ..prompts.generation import PromptType, Prompts, parse_prompt, point_labels


def as_prompts(kind: str, candidates: np.ndarray) -> Prompts:
    """Searched candidates (n, 4) boxes or (n, 2) clicks -> Prompts of n single prompts."""
    if kind == "adv-point":
        return Prompts(point_coords=candidates[:, None, :], point_labels=point_labels(len(candidates), 1))
    return Prompts(boxes=candidates)


def iou_objective(seg: Segmenter, kind: str, gt: np.ndarray, ignore: Optional[np.ndarray],
                  multimask: bool = False) -> Objective:
    """Candidates -> (mask IoU of `seg`'s prediction vs the (H, W) ground truth (n,), the masks):
    one batched `seg.predict` call per round of the search."""

    def objective(candidates: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        masks = seg.predict(as_prompts(kind, candidates), multimask=multimask)
        return np.array([mask_iou(m, gt, ignore) for m in masks]), list(masks)

    return objective


def searched_record(prompt: PromptType, found: SearchResult, gt: np.ndarray, ignore: Optional[np.ndarray]) -> Dict:
    """One object's scores for a searched prompt type: iou (IoU-Min or IoU-Max), biou of that
    mask, iou_base (the ground-truth box, or the most central click), the prompt found and the
    decoder passes spent."""
    where = "click" if prompt.kind == "adv-point" else "box"
    return {"iou": found.value, "biou": boundary_iou(found.extra, gt, ignore=ignore), "stability": None, "n": 1,
            "iou_base": found.base, "passes": found.passes,
            where: ",".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in found.best)}


def run_searched(seg: Segmenter, prompt: PromptType, sample, budget: int, rng: np.random.Generator,
                 multimask: bool = False, allowed: Optional[np.ndarray] = None
                 ) -> Optional[Tuple[Dict, Prompts, Prompts, np.ndarray]]:
    """(record, the prompt found and the base prompt (the ground-truth box or the most central
    click) as Prompts of 1, the found prompt's (H, W) mask) of `seg` on one object, or None when
    the object is too small for the prompt type."""
    objective = iou_objective(seg, prompt.kind, sample.mask, sample.ignore, multimask)
    found = search_prompt(prompt, sample.mask, objective, budget, rng, allowed)
    if found is None:
        return None
    record = searched_record(prompt, found, sample.mask, sample.ignore)
    return record, as_prompts(prompt.kind, found.best[None]), as_prompts(prompt.kind, found.tried[:1]), found.extra


def worst_case_rows(rows: List[Dict]) -> List[Dict]:
    """BREPS's names per model x dataset from the benchmark's rows: IoU-Min@R (adv-box@R),
    IoU-Max@R (best-box@R), IoU-Base (gt-box, else the search's own ground-truth box), the
    random noisy-box@R mIoU beside them, and the click's IoU-Min (adv-point) and IoU-Base
    (the most central click)."""
    out: Dict[Tuple[str, str], Dict] = {}
    for r in rows:
        p = parse_prompt(r["prompt"])
        key = (r["model"], r["dataset"])
        if p.kind in ("adv-box", "best-box", "adv-point", "gt-box", "noisy-box"):
            out.setdefault(key, {"model": r["model"], "dataset": r["dataset"]})
        entry = out.get(key)
        if p.kind == "adv-box":
            entry[f"IoU-Min@{p.value}"] = r["mIoU"]
            entry.setdefault("IoU-Base", r.get("iou_base"))
        elif p.kind == "best-box":
            entry[f"IoU-Max@{p.value}"] = r["mIoU"]
            entry.setdefault("IoU-Base", r.get("iou_base"))
        elif p.kind == "gt-box":
            entry["IoU-Base"] = r["mIoU"]
        elif p.kind == "noisy-box":
            entry[f"noisy-box@{p.value}"] = r["mIoU"]
        elif p.kind == "adv-point":
            entry["click IoU-Min"], entry["click IoU-Base"] = r["mIoU"], r.get("iou_base")
            entry["click objects"] = r["objects"]
    searched = [e for e in out.values() if any(k.startswith(("IoU-Min", "IoU-Max", "click")) for k in e)]
    for e in searched:  # random boxes only at the searched scales
        scales = {k.partition("@")[2] for k in e if k.startswith(("IoU-Min@", "IoU-Max@"))}
        for k in [k for k in e if k.startswith("noisy-box@") and k.partition("@")[2] not in scales]:
            del e[k]
    return searched


def worst_case_table(rows: List[Dict], too_small: Dict[str, Dict[str, int]]) -> str:
    """Markdown: one table per dataset, models as rows, IoU-Min / IoU-Base / IoU-Max columns."""
    wc = worst_case_rows(rows)
    if not wc:
        return ""
    out = ["## Worst case (BREPS's IoU-Min / IoU-Base / IoU-Max; each model searched for its own prompts)\n"]
    for ds in dict.fromkeys(e["dataset"] for e in wc):
        entries = [e for e in wc if e["dataset"] == ds]
        cols = [k for k in dict.fromkeys(k for e in entries for k in e) if k not in ("model", "dataset", "click objects")]
        cols = sorted(cols, key=column_order)
        out.append(f"### {ds}\n")
        out.append("| model | " + " | ".join(cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        for e in entries:
            cells = ["—" if e.get(c) is None else f"{e[c]:.3f}" for c in cols]
            out.append(f"| {e['model']} | " + " | ".join(cells) + " |")
        skipped = too_small.get(ds, {})
        notes = [f"{p}: {n} object(s) too small, skipped" for p, n in skipped.items() if n]
        out.append("\n" + ("; ".join(notes) + ".\n" if notes else ""))
    return "\n".join(out)


def column_order(name: str) -> Tuple:
    """IoU-Min@R, noisy-box@R, IoU-Max@R per R, IoU-Base first, clicks last."""
    head, _, r = name.partition("@")
    rank = {"IoU-Base": 0, "IoU-Min": 1, "noisy-box": 2, "IoU-Max": 3, "click IoU-Min": 4, "click IoU-Base": 5}
    return (rank.get(head, 9) >= 4, float(r) if r else -1.0, rank.get(head, 9))
