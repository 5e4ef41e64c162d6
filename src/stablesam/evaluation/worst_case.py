"""The searched prompt types in the benchmark: each model's own worst (or best) box and click
per object (`stablesam.prompts.adversarial`), and BREPS's IoU-Min / IoU-Base / IoU-Max table."""

from typing import Dict, List, Optional, Tuple

import numpy as np

from ..prompts.adversarial import SearchResult, search_prompt
from .metrics import boundary_iou, mask_iou
from ..models.segmenters import Segmenter
from ..prompts.generation import PromptType, Prompts, box_noise_draws, object_rng, parse_prompt, point_labels


def as_prompts(kind: str, candidates: np.ndarray) -> Prompts:
    """Searched candidates (n, 4) boxes or (n, 2) clicks -> Prompts of n single prompts."""
    if kind == "adv-point":
        return Prompts(point_coords=candidates[:, None, :], point_labels=point_labels(len(candidates), 1))
    return Prompts(boxes=candidates)


def box_batch_key(boxes: np.ndarray, multimask: bool) -> bytes:
    """A batch of boxes (n, 4) as a key of `DecodedBoxes`: equal only for bit-identical boxes."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float64)
    return bytes([multimask]) + boxes.shape[0].to_bytes(4, "little") + boxes.tobytes()


DecodedBoxes = Dict[bytes, np.ndarray]  # box_batch_key -> the (n, H, W) masks one predict call gave


class IoUObjective:
    """Candidates -> (mask IoU of `seg`'s prediction vs the (H, W) ground truth (n,), the masks):
    one batched `seg.predict` call per round of the search. A round whose whole batch of boxes
    is in `decoded` (the same boxes the benchmark already decoded in one call, e.g. an object's
    noisy-box@R prompts) takes those masks instead, the answer the call would give again."""

    def __init__(self, seg: Segmenter, kind: str, gt: np.ndarray, ignore: Optional[np.ndarray],
                 multimask: bool = False, decoded: Optional[DecodedBoxes] = None):
        self.seg, self.kind, self.gt, self.ignore, self.multimask = seg, kind, gt, ignore, multimask
        self.decoded = decoded or {}
        self.passes = 0  # decoder passes run (prompts decoded), reused rounds not counted

    def __call__(self, candidates: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        masks = self.decoded.get(box_batch_key(candidates, self.multimask)) if self.kind != "adv-point" else None
        if masks is None:
            masks = self.seg.predict(as_prompts(self.kind, candidates), multimask=self.multimask)
            self.passes += len(candidates)
        return np.array([mask_iou(m, self.gt, self.ignore) for m in masks]), list(masks)


def searched_record(prompt: PromptType, found: SearchResult, gt: np.ndarray, ignore: Optional[np.ndarray],
                    passes: int) -> Dict:
    """One object's scores for a searched prompt type: iou (IoU-Min or IoU-Max), biou of that
    mask, iou_base (the ground-truth box, or the most central click), the prompt found, the
    candidates tried and the decoder passes run for them (fewer when masks were reused)."""
    where = "click" if prompt.kind == "adv-point" else "box"
    return {"iou": found.value, "biou": boundary_iou(found.extra, gt, ignore=ignore), "stability": None, "n": 1,
            "iou_base": found.base, "tried": found.passes, "passes": passes,
            where: ",".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in found.best)}


def search_starts(prompt: PromptType, seed: int, dataset: str, name: str, samples: int) -> Optional[np.ndarray]:
    """The benchmark's random starts for a box search (adv-box@R, best-box@R): the u draws
    (samples, 4) of the object's own noisy-box@R prompts (`generate` with the same seed and K),
    so the worst box found is at most the worst random box; None for adv-point."""
    if prompt.kind == "adv-point":
        return None
    noisy = PromptType("noisy-box", prompt.value)
    return box_noise_draws(object_rng(seed, dataset, name, noisy.name), samples)


def run_searched(seg: Segmenter, prompt: PromptType, sample, budget: int, rng: np.random.Generator,
                 multimask: bool = False, allowed: Optional[np.ndarray] = None,
                 starts: Optional[np.ndarray] = None, decoded: Optional[DecodedBoxes] = None
                 ) -> Optional[Tuple[Dict, Prompts, Prompts, np.ndarray]]:
    """(record, the prompt found and the base prompt (the ground-truth box or the most central
    click) as Prompts of 1, the found prompt's (H, W) mask) of `seg` on one object, or None when
    the object is too small for the prompt type. `starts`, `decoded`: see `search_box`,
    `IoUObjective`."""
    objective = IoUObjective(seg, prompt.kind, sample.mask, sample.ignore, multimask, decoded)
    found = search_prompt(prompt, sample.mask, objective, budget, rng, allowed, starts)
    if found is None:
        return None
    record = searched_record(prompt, found, sample.mask, sample.ignore, objective.passes)
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
