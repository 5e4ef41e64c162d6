#!/usr/bin/env python
"""The plugin study's table: every variant of scripts/plugin_study.sh against the
base, pooled over all validation objects, with the study's target quantities.

    python scripts/study_table.py runs/study [--out docs/results/plugin_study.md]

Columns: mIoU per prompt type and its mean over the five types; Δ gt-box (points); the share
of the base's gt-box -> noisy-box@0.4 mIoU gap that the variant closes; stability per noisy
prompt type (a ✓ when it beats the base on all four); the mask token's layer-2 attention mass
inside the object under noisy-box@0.4; trainable parameters and training minutes (embedding
excluded: it is cached once for the whole study). Rows come in the study's rounds (see
scripts/plugin_study.sh): round 1 against release 0.1's plugin, round 2's default and DT sweep
(4 epochs), round 2's 1-epoch screening against default1; the base heads each.
"""

import argparse
import csv
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summarize_results import POOLED, REPO, read_objects  # noqa: E402

sys.path.insert(0, str(REPO / "src"))
from stablesam.evaluation.prompt_eval import aggregate  # noqa: E402
from stablesam.fileio import write_text

PROMPTS = ["gt-box", "noisy-box@0.2", "noisy-box@0.4", "points@1", "points@3"]
NOISY = PROMPTS[1:]


def pooled(folder: Path) -> tuple:
    """(model SPEC, {prompt: aggregate row}) for the one model of an eval folder, all datasets pooled."""
    objects = read_objects([folder], {})
    models = list(dict.fromkeys(o["model"] for o in objects))
    if len(models) != 1:
        sys.exit(f"{folder}: expected one model, found {models}")
    return models[0], {r["prompt"]: r for r in aggregate(objects, models, [POOLED], PROMPTS)}


def training(model: str) -> tuple:
    """(trainable parameters, training minutes) of the weights a model SPEC names
    (`BASE+plugin=PATH` / `BASE+decoder=PATH`, a snapshot included); (None, None) for a base."""
    for sep in ("+plugin=", "+decoder="):
        if sep in model:
            path = Path(model.split(sep, 1)[1])
            saved = torch.load(path, map_location="cpu", weights_only=True)
            params = sum(v.numel() for v in saved["state_dict"].values() if v.is_floating_point())
            with open(path.parent / "log.csv", newline="") as f:
                seconds = {int(r["step"]): float(r["seconds"]) for r in csv.DictReader(f)}
            steps = saved.get("meta", {}).get("steps")
            return params, seconds[steps] / 60 if steps in seconds else None
    return None, None


ROUNDS = (
    ("Round 1: one change against release 0.1's plugin (the paper's), 4 epochs unless named (epochsN)",
     lambda n: not (n.startswith(("default", "dt_", "s1_")))),
    ("Round 2: the chosen default (rank-32 projection, 32-channel offset net, rts_combo mixture) and the "
     "DT lr sweep, same data, mixture and steps (4 epochs)", lambda n: n == "default4" or n.startswith("dt_")),
    ("Round 2 screening: one change against the default, 1 epoch each (reference: default1)",
     lambda n: n == "default1" or n.startswith("s1_")),
)


def row(name: str, model: str, rows: dict, base: dict, gap: float) -> str:
    miou = [rows[p]["mIoU"] for p in PROMPTS]
    stab = [rows[p]["stability"] for p in NOISY]
    better = name != "base" and all(s > base[p]["stability"] for s, p in zip(stab, NOISY))
    closed = (rows["noisy-box@0.4"]["mIoU"] - base["noisy-box@0.4"]["mIoU"]) / gap if gap > 0 else float("nan")
    inside = rows["noisy-box@0.4"].get("attention_inside")
    alpha = [rows[p].get("alpha1") for p in ("gt-box", "noisy-box@0.4", "points@1")]
    params, minutes = training(model)
    return (f"| {name} | " + " | ".join(f"{v:.3f}" for v in miou) + f" | {sum(miou) / len(miou):.3f}"
            + f" | {100 * (miou[0] - base['gt-box']['mIoU']):+.1f}"
            + f" | {100 * closed:.0f} %" + " | " + " / ".join(f"{s:.3f}" for s in stab) + (" ✓" if better else "")
            + f" | {'—' if inside is None else f'{inside:.3f}'}"
            + " | " + ("—" if None in alpha else " / ".join(f"{a:.2f}" for a in alpha))
            + f" | {'—' if params is None else f'{params:,}'} | {'—' if minutes is None else f'{minutes:.1f}'} |")


def table(study: Path, prefix: str = "eval_") -> str:
    base_model, base = pooled(study / f"{prefix}base")
    gap = base["gt-box"]["mIoU"] - base["noisy-box@0.4"]["mIoU"]
    head = ("| variant | " + " | ".join(PROMPTS) + " | mean | Δ gt-box | gap closed | stability "
            + " / ".join(p.replace("noisy-box", "nb") for p in NOISY)
            + " | attention inside (nb@0.4) | α1 gt-box / nb@0.4 / points@1 | params | train min |")
    rule = "|" + "---|" * (len(PROMPTS) + 9)

    def order(folder: Path) -> str:  # by name, numbers in numeric order
        return re.sub(r"\d+", lambda m: m.group().zfill(6), folder.name[len(prefix):])

    scored = []
    for folder in sorted(study.glob(f"{prefix}*"), key=order):
        name = folder.name[len(prefix):]
        if name == "base" or (prefix == "eval_" and name.startswith("full_")):
            continue
        model, rows = pooled(folder)
        if set(rows) == set(PROMPTS):
            scored.append((name, model, rows))
    objects = base["gt-box"]["objects"]
    text = (f"{objects} validation objects ({'whole split' if prefix == 'eval_full_' else 'screening quarter'}), "
            f"K = 20 per noisy prompt; base gap gt-box -> noisy-box@0.4: {100 * gap:.1f} points.\n")
    rounds = ROUNDS if prefix == "eval_" else (("Finalists on the whole validation split", lambda n: True),)
    for title, member in rounds:
        chosen = [r for r in scored if member(r[0])]
        if chosen:
            lines = [head, rule, row("base", base_model, base, base, gap)]
            lines += [row(name, model, rows, base, gap) for name, model, rows in chosen]
            text += f"\n**{title}**\n\n" + "\n".join(lines) + "\n"
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", type=Path, help="scripts/plugin_study.sh's RUN folder (runs/study)")
    p.add_argument("--full", action="store_true", help="the finalists on the whole split (eval_full_*)")
    p.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = p.parse_args(argv)
    prefix = "eval_full_" if args.full else "eval_"
    if not (args.study / f"{prefix}base" / "per_object.csv").is_file():
        sys.exit(f"{args.study}: no {prefix}base/ (run STUDY={'final' if args.full else 'base'} "
                 "scripts/plugin_study.sh first)")
    text = table(args.study, prefix)
    print(text, end="")
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
