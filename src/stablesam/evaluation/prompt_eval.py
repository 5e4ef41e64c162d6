"""The prompt-robustness benchmark: every model x dataset x prompt type, K prompts per object."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..models.segmenters import SamSegmenter, Segmenter
from ..prompts.adversarial import DEFAULT_BUDGET, click_space
from ..prompts.generation import PromptType, generate, object_rng
from ..prompts.kinds import ADV_POINT
from .attention import AttentionProbe, grid_fraction, mass_inside, reads_from
from .evaluator import Evaluator, run_evaluator
from .metrics import boundary_iou, mask_iou, stability
from .worst_case import DecodedBoxes, box_batch_key, run_searched, search_starts

EXAMPLE_PROMPTS = ("noisy-box@0.4", "points@1")  # else the first prompt type asked for


@dataclass
class EvalConfig:
    prompts: Sequence[PromptType]
    samples: int = 20
    seed: int = 0
    limit: Optional[int] = None
    multimask: bool = False
    examples: int = 4  # objects kept for the example sheet
    explain: int = 0  # > 0: record the mask token's attention (share inside the object) and keep
    # this many objects' attention maps for the explain sheet
    adv_budget: int = DEFAULT_BUDGET  # prompts tried per object for each searched prompt type


@dataclass
class EvalResult:
    rows: List[Dict] = field(default_factory=list)  # one per model x dataset x prompt
    objects: List[Dict] = field(default_factory=list)  # one per model x dataset x object x prompt
    examples: List[Dict] = field(default_factory=list)  # a few objects with their predictions
    skipped: Dict[str, List[str]] = field(default_factory=dict)  # model -> prompt kinds it cannot take
    too_small: Dict[str, Dict[str, int]] = field(default_factory=dict)  # dataset -> searched prompt ->
    # objects with no admissible click or box


def object_scores(masks: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray]) -> Dict:
    """Scores of the n masks (n, H, W) predicted for one object and prompt type."""
    return {
        "iou": float(np.mean([mask_iou(m, gt, ignore) for m in masks])),
        "biou": float(np.mean([boundary_iou(m, gt, ignore=ignore) for m in masks])),
        "stability": stability(masks, ignore) if len(masks) > 1 else None,
        "n": int(len(masks)),
    }


def predict_with_attention(seg: Segmenter, prompts, multimask: bool, mask: np.ndarray) -> tuple:
    """seg.predict, and for a SAM the mask token's layer-2 attention: (masks, (n, h*w) maps or
    None, share of each map inside `mask` or None, Stable-SAM's offsets (n, h, w, 2) or None).
    For Stable-SAM the maps say where the attended features come from (`reads_from`)."""
    if not isinstance(seg, SamSegmenter) or seg.model.family != "sam1":  # the probe reads SAM 1's decoder
        return seg.predict(prompts, multimask=multimask), None, None, None
    sam = seg.model.sam
    with AttentionProbe(sam) as probe:
        masks = seg.predict(prompts, multimask=multimask)
    maps = probe.last().numpy()
    routing = seg.predictor.routing
    if routing["offsets"] is not None:  # Stable-SAM: count where the attended features come from
        maps = reads_from(maps, routing["offsets"], routing["alpha"])
    fraction = grid_fraction(mask, sam.image_encoder.img_size, tuple(sam.prompt_encoder.image_embedding_size))
    return masks, maps, mass_inside(maps, fraction), routing["offsets"]


class PromptEvaluator(Evaluator):
    """The prompt protocol: K prompts of every type per object for every model. The prompts of an
    object depend only on (seed, dataset, object, prompt type), so every model sees the same
    prompts and reruns give the same numbers."""

    label = "eval"

    def __init__(self, segmenters: Sequence[Segmenter], config: EvalConfig):
        self.segmenters, self.config, self.limit = list(segmenters), config, config.limit

    def reset(self, datasets: Sequence) -> None:
        self.datasets = list(datasets)
        self.result = EvalResult()
        self.example_ids: Dict[str, set] = {}
        for seg in self.segmenters:
            cannot = [p.name for p in self.config.prompts if not seg.accepts(p.kind)]
            if cannot:
                self.result.skipped[seg.name] = cannot

    def examples_of(self, ds) -> set:
        """Indices of the dataset's objects kept for the example sheets, spread over it."""
        if ds.name not in self.example_ids:
            config = self.config
            n = len(ds) if config.limit is None else min(config.limit, len(ds))
            per_dataset = max(1, max(config.examples, config.explain) // len(self.datasets))
            self.example_ids[ds.name] = set(np.linspace(0, n - 1, per_dataset).round().astype(int).tolist()) if n \
                else set()
        return self.example_ids[ds.name]

    def process(self, ds, i: int, sample) -> None:
        example_ids = self.examples_of(ds)
        config = self.config
        prompts = {
            p.name: generate(p, sample.mask, config.samples, object_rng(config.seed, ds.name, sample.name, p.name))
            for p in config.prompts if not p.searched
        }
        allowed = click_space(sample.mask) if any(p.kind == ADV_POINT for p in config.prompts) else None
        keep = i in example_ids  # spread over the dataset, not its first few (similar) objects
        shown = example_prompts(self.config.prompts)
        example = {"dataset": ds.name, "name": sample.name, "image": sample.image, "mask": sample.mask,
                   "prompts": {k: prompts[k][0] for k in shown if k in prompts}, "pred": {},
                   "attention": {}, "model_prompts": {}, "iou": {}}
        small = set()
        searched = any(p.searched for p in config.prompts)
        for seg in self.segmenters:
            seg.set_image(sample.image)
            decoded: DecodedBoxes = {}  # this model's masks of the box prompts, for the box searches
            for p in sorted(config.prompts, key=lambda p: p.searched):  # searches last: they reuse masks
                if not seg.accepts(p.kind) or p.name in small:
                    continue
                if p.searched:  # each model's own worst (best) prompt, found by querying it
                    found = run_searched(seg, p, sample, config.adv_budget,
                                         object_rng(config.seed, ds.name, sample.name, p.name), config.multimask,
                                         allowed, search_starts(p, config.seed, ds.name, sample.name, config.samples),
                                         decoded)
                    if found is None:
                        small.add(p.name)
                        counts = self.result.too_small.setdefault(ds.name, {})
                        counts[p.name] = counts.get(p.name, 0) + 1
                        continue
                    record, prompt, base, mask = found
                    self.result.objects.append({"model": seg.name, "dataset": ds.name, "object": sample.name,
                                                "prompt": p.name, **record})
                    if keep and p.name in shown:
                        example["prompts"][p.name] = base
                        example["model_prompts"][(seg.name, p.name)] = prompt
                        example["pred"][(seg.name, p.name)] = mask
                        example["iou"][(seg.name, p.name)] = record["iou"]
                    continue
                if self.config.explain:
                    masks, maps, inside, offsets = predict_with_attention(
                        seg, prompts[p.name], self.config.multimask, sample.mask)
                else:
                    masks, maps, inside, offsets = seg.predict(prompts[p.name], multimask=config.multimask), None, None, None
                if searched and prompts[p.name].boxes is not None and prompts[p.name].point_coords is None:
                    decoded[box_batch_key(prompts[p.name].boxes, config.multimask)] = masks
                scores = object_scores(masks, sample.mask, sample.ignore)
                if inside is not None:
                    scores["attention_inside"] = float(np.mean(inside))
                if isinstance(seg, SamSegmenter) and seg.plugins:  # the DRP's trust in the DSP
                    scores["alpha1"] = float(np.mean(seg.predictor.routing["alpha"][:, 0]))
                self.result.objects.append({"model": seg.name, "dataset": ds.name, "object": sample.name,
                                            "prompt": p.name, **scores})
                if keep and p.name in example["prompts"]:
                    example["pred"][(seg.name, p.name)] = masks[0]
                    if maps is not None:
                        example["attention"][(seg.name, p.name)] = (
                            maps[0], None if offsets is None else offsets[0])
        if keep:
            example["prompts"] = {k: example["prompts"][k] for k in shown if k in example["prompts"]}
            self.result.examples.append(example)

    def evaluate(self) -> EvalResult:
        self.result.rows = aggregate(self.result.objects, [s.name for s in self.segmenters],
                                     [d.name for d in self.datasets], [p.name for p in self.config.prompts])
        return self.result


def evaluate(datasets: Sequence, segmenters: Sequence[Segmenter], config: EvalConfig, progress: bool = True) -> EvalResult:
    """Run the prompt protocol (`PromptEvaluator`) on the datasets."""
    return run_evaluator(datasets, PromptEvaluator(segmenters, config), progress)


def example_prompts(prompts: Sequence[PromptType]) -> List[str]:
    """The prompt types the example sheet shows: EXAMPLE_PROMPTS (else the first type asked
    for), and the first adv-box type (each model's own worst box)."""
    names = [p.name for p in prompts]
    shown = [k for k in EXAMPLE_PROMPTS if k in names] or [names[0]]
    adv = [p.name for p in prompts if p.kind == "adv-box"]
    return shown + [adv[0]] if adv and adv[0] not in shown else shown


OPTIONAL_SCORES = ("attention_inside", "alpha1", "iou_base", "tried", "passes")


def aggregate(objects: List[Dict], models: List[str], datasets: List[str], prompts: List[str]) -> List[Dict]:
    """Per-object scores -> one row per model x dataset x prompt (means over objects)."""
    rows = []
    for model in models:
        for ds in datasets:
            for prompt in prompts:
                recs = [o for o in objects if o["model"] == model and o["dataset"] == ds and o["prompt"] == prompt]
                if not recs:
                    continue
                stab = [o["stability"] for o in recs if o["stability"] is not None]
                row = {
                    "model": model, "dataset": ds, "prompt": prompt,
                    "mIoU": float(np.mean([o["iou"] for o in recs])),
                    "mBIoU": float(np.mean([o["biou"] for o in recs])),
                    "stability": float(np.mean(stab)) if stab else None,
                    "objects": len(recs),
                }
                for key in OPTIONAL_SCORES:  # recorded for some models or with --explain only
                    values = [o[key] for o in recs if o.get(key) is not None]
                    if values:
                        row[key] = float(np.mean(values))
                rows.append(row)
    return rows
