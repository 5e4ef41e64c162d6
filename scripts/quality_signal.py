#!/usr/bin/env python
"""Can a model tell a good box from a loose one? The signal a quality-aware DRP would need.

    python scripts/quality_signal.py [--model tiny-sam] [--objects 40] [--samples 5] [--seed 0]

For the first --objects validation objects (round-robin over the five development sets under
../shared/data, splits/val.txt), --samples `gt-box` and `noisy-box@0.4` prompts each, decoded by
--model with its plugins off: the model's own predicted IoU, the share of the box its mask fills
and the IoU of its mask's bounding box with the prompt box (how tightly the box fits what the
model segments), per prompt type, and how well each separates the two types (AUC: the chance that a
`gt-box` prompt scores higher than a `noisy-box@0.4` one; 0.5 is no signal), beside the true
mask IoU of each type. Then the fit per development set, also measured on the best-fitting of
the model's three multimask outputs (could a good box that the single mask misses be told by an
alternative mask that fits it?).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))

from adversarial_cost import real_objects  # noqa: E402  (the validation objects, round-robin)
from stablesam import StableSamPredictor  # noqa: E402
from stablesam.evaluation.metrics import mask_iou  # noqa: E402
from stablesam.modeling.box_fit import box_fit  # noqa: E402
from stablesam.models.spec import build_model, parse_model_spec  # noqa: E402
from stablesam.prompts.generation import generate, object_rng, parse_prompt  # noqa: E402

KINDS = ("gt-box", "noisy-box@0.4")


def auc(high: np.ndarray, low: np.ndarray) -> float:
    """P(a draw from `high` > a draw from `low`), ties counting half."""
    return float(np.mean(high[:, None] > low[None, :]) + 0.5 * np.mean(high[:, None] == low[None, :]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-sam")
    p.add_argument("--objects", type=int, default=40)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = build_model(parse_model_spec(args.model), "cpu")
    model.plugins_enabled = False
    predictor = StableSamPredictor(model)
    scores = {k: {"predicted": [], "fill": [], "fit": [], "iou": [], "fit3": [], "set": []} for k in KINDS}
    for sample in real_objects(args.objects):
        predictor.set_image(sample.image)
        for kind in KINDS:
            prompts = generate(parse_prompt(kind), sample.mask, args.samples,
                               object_rng(args.seed, sample.dataset, sample.name, kind))
            for box in prompts.boxes:
                masks, predicted, _ = predictor.predict(box=box, multimask_output=False)
                x0, y0, x1, y1 = (int(round(v)) for v in box)
                scores[kind]["predicted"].append(float(predicted[0]))
                scores[kind]["fill"].append(masks[0][y0:y1, x0:x1].sum() / max(1, (x1 - x0) * (y1 - y0)))
                boxes = torch.tensor(box[None], dtype=torch.float32)
                scores[kind]["fit"].append(float(box_fit(torch.from_numpy(masks[:1]), boxes)))
                scores[kind]["iou"].append(mask_iou(masks[0], sample.mask, sample.ignore))
                alternatives = torch.from_numpy(predictor.predict(box=box, multimask_output=True)[0])
                scores[kind]["fit3"].append(float(box_fit(alternatives, boxes.expand(len(alternatives), 4)).max()))
                scores[kind]["set"].append(sample.dataset)
    good, loose = ({m: np.array(v) for m, v in scores[k].items()} for k in KINDS)
    print(f"{args.model} (plugins off), {args.objects} validation objects x {args.samples} prompts per type")
    print(f"| signal | {KINDS[0]} | {KINDS[1]} | AUC |")
    print("|---|---|---|---|")
    for name, key in (("predicted IoU", "predicted"), ("mask fill of the box", "fill"),
                      ("fit of the box to the mask's box", "fit")):
        print(f"| {name} | {good[key].mean():.3f} | {loose[key].mean():.3f} | {auc(good[key], loose[key]):.2f} |")
    print(f"| true mask IoU | {good['iou'].mean():.3f} | {loose['iou'].mean():.3f} | {auc(good['iou'], loose['iou']):.2f} |")
    print("\nBox fit per set, AUC in brackets: the single mask's, the best-fitting multimask output's")
    print(f"| set | fit {KINDS[0]} / {KINDS[1]} | best of 3 {KINDS[0]} / {KINDS[1]} |")
    print("|---|---|---|")
    for name in dict.fromkeys(good["set"]):
        g, n = good["set"] == name, loose["set"] == name
        print(f"| {name} | " + " | ".join(
            f"{good[key][g].mean():.2f} / {loose[key][n].mean():.2f} ({auc(good[key][g], loose[key][n]):.2f})"
            for key in ("fit", "fit3")) + " |")


if __name__ == "__main__":
    main()
