#!/usr/bin/env python
"""Leave-one-dataset-out (LODO): do plugins trained on some datasets help on another one?

    python scripts/lodo.py --data ../shared/data/{davis345,coco_mval,weizmann_horse,ecssd,oxford_pets} \\
        --model tiny-sam --train-split splits/train.txt --eval-split splits/val.txt --samples 20 \\
        --variant 'default=--epochs 4' --variant 'dt_3e-5=--tune decoder --lr 3e-5 --epochs 4' \\
        --cache runs/cache --out runs/lodo

For each fold (one --data SPEC held out), each variant trains (`stablesam train` with the
variant's arguments, on the base --model) on the other SPECs' objects of --train-split; then the
base and every trained model are scored on the held-out SPEC's objects of --eval-split
(`stablesam eval`, K = --samples prompts per object and prompt type, --seed). Both splits are
optional (all objects). A variant is NAME=ARGS: `stablesam train` options as one shell string
(not --data, --model, --out, --split, --cache, --resume, which this script sets).

A derived variant (--derived NAME=VARIANT:OPTION=VALUE[,...]) is a trained plugin variant's file
with decode-time options set (`scripts/set_plugin_options.py`, e.g. the output selector:
'strong_iou=strong:selector=iou'), scored like the others without training again.

Resumable: rerun the same command; --table-only writes the table of what has finished without
running anything (e.g. while other processes run other --folds). A finished evaluation or training is skipped, an interrupted
training continues (--resume); a variant rerun with other arguments is refused (pick another
--out, or delete OUT/FOLD/VARIANT). New variants or folds can be added to a finished study.

Writes OUT/lodo.md and OUT/lodo.json: for each variant, per fold, the mean over folds (each
fold weighs the same) and the worst fold (each column's worst value over the folds):
  Δ gt-box, Δ noisy-box@0.4, Δ points@1: mIoU change against the base, in points;
  gap closed: the share of the base's gt-box -> noisy-box@0.4 mIoU gap that the variant closes;
  Δ mean: change of the mean mIoU over all prompt types, in points;
  Δ stability: change of the stability (mean pairwise IoU of the K masks), in points, averaged
    over the prompt types that have one (all but gt-box);
  α: the DRP's mean weight α1 of the deformed features per prompt type (plugins only), and
    α gap = α(noisy-box@0.4) - α(gt-box): routing by prompt quality.
lodo.json also holds every prompt type's mIoU, stability and α, per fold, for base and variants.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing
sys.path.insert(0, str(REPO / "scripts"))  # set_plugin_options, also when imported by path

from stablesam.cli import build_parser  # noqa: E402
from stablesam.cli import main as stablesam  # noqa: E402
from stablesam.fileio import write_text

DEFAULT_PROMPTS = "gt-box,noisy-box@0.2,noisy-box@0.4,points@1,points@3"
RESERVED = ("--data", "--model", "--out", "--split", "--cache", "--no-cache", "--resume", "--data-root", "--device",
            "--val", "--val-split")
GT, NOISY, CLICK = "gt-box", "noisy-box@0.4", "points@1"
COLUMNS = ("d_gt", "d_noisy", "gap_closed", "d_click", "d_mean", "d_stability")


class LodoError(RuntimeError):
    """The study cannot go on; the message says why."""


def parse_variant(text: str) -> tuple:
    """'NAME=ARGS' -> (NAME, [ARGS...], weights stem 'plugin' | 'decoder'), checked by `stablesam train`'s parser."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() \
            or name == "base":
        raise LodoError(f"--variant {text!r}: expected NAME=ARGS with NAME of letters, digits, - _ . (not 'base')")
    args = shlex.split(rest)
    taken = sorted({a.split("=")[0] for a in args} & set(RESERVED))
    if taken:
        raise LodoError(f"--variant {name}: {', '.join(taken)} are set by this script")
    try:
        parsed = build_parser().parse_args(["train", "--data", "x", "--out", "x", *args])
    except SystemExit:
        raise LodoError(f"--variant {name}: `stablesam train` does not accept {rest!r}") from None
    return name, args, "plugin" if parsed.tune == "plugins" else "decoder"


def fold_name(spec: str, data_root: Optional[str]) -> str:
    """The dataset name(s) a --data SPEC opens, as `stablesam eval` reports them."""
    from stablesam.data.layouts import parse_spec

    return "+".join(source.name for source in parse_spec(spec, data_root=data_root))


def parse_derived(text: str, variants: List[tuple]) -> tuple:
    """'NAME=VARIANT:OPT=V,OPT=V' -> (NAME, VARIANT, {option: value}); VARIANT must train a plugin."""
    from set_plugin_options import config_options, parse_options
    from stablesam.modeling import PluginConfig

    name, sep, rest = text.partition("=")
    source, colon, options = rest.partition(":")
    plugin_variants = [v[0] for v in variants if v[2] == "plugin"]
    if not sep or not colon or source not in plugin_variants:
        raise LodoError(f"--derived {text!r}: expected NAME=VARIANT:OPTION=VALUE[,...] with VARIANT one of "
                        f"the plugin --variants {plugin_variants}")
    try:
        changes = parse_options(o for o in options.split(",") if o)
        PluginConfig(**config_options(changes))  # the values' own checks, before any work
        return name.strip(), source, changes
    except ValueError as e:
        raise LodoError(f"--derived {name}: {e}") from None


def run(argv: List[str], what: str) -> None:
    print(f"lodo: {what}: stablesam {shlex.join(argv)}", flush=True)
    code = stablesam(argv)
    if code != 0:
        raise LodoError(f"{what} failed (exit code {code}); fix the cause and rerun the same command to resume")


def check_recorded(folder: Path, record: Dict) -> None:
    """Refuse to reuse a folder made with other arguments; record them in a new one."""
    path = folder / "args.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            raise LodoError(f"{folder} was made with other arguments ({path}); use another --out or delete the folder")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(record, indent=2))


def evaluate(held: str, model: str, out: Path, args: argparse.Namespace, runtime: List[str]) -> None:
    if (out / "results.json").is_file():
        return
    split = ["--split", args.eval_split] if args.eval_split else []
    limit = ["--limit", str(args.limit)] if args.limit else []
    run(["eval", "--data", held, *split, "--model", model, "--prompts", args.prompts, "--samples", str(args.samples),
         "--seed", str(args.seed), *limit, "--out", str(out), "--force", *runtime], f"eval {model} on {held}")


def run_fold(held: str, fold: str, train_specs: List[str], variants: List[tuple], args: argparse.Namespace,
             runtime: List[str], derived: List[tuple] = ()) -> None:
    out = Path(args.out) / fold
    scoring = {"data": held, "eval_split": args.eval_split, "prompts": args.prompts, "samples": args.samples,
               "seed": args.seed, "limit": args.limit}
    check_recorded(out / "base", {"model": args.model, **scoring})
    evaluate(held, args.model, out / "base" / "eval", args, runtime)
    for name, train_args, stem in variants:
        folder = out / name
        check_recorded(folder, {"model": args.model, "train_data": train_specs, "train_split": args.train_split,
                                "train_args": train_args, **scoring})
        weights = folder / "train" / f"{stem}.pt"
        if not weights.is_file():
            split = ["--split", args.train_split] if args.train_split else []
            # this script's own folder: resumed from its checkpoint, or started afresh (--force keeps other files)
            resume = ["--resume"] if (folder / "train" / "checkpoint.pt").is_file() else ["--force"]
            run(["train", "--data", *train_specs, *split, "--model", args.model, "--out", str(folder / "train"),
                 *train_args, *resume, *runtime], f"train {name} without {fold}")
        evaluate(held, f"{args.model}+{stem}={weights}", folder / "eval", args, runtime)
    for name, source, options in derived:
        from set_plugin_options import set_options

        folder = out / name
        check_recorded(folder, {"model": args.model, "from": source, "options": options, **scoring})
        weights = folder / "plugin.pt"
        if not weights.is_file():
            set_options(out / source / "train" / "plugin.pt", weights, options)
        evaluate(held, f"{args.model}+plugin={weights}", folder / "eval", args, runtime)


# ----------------------------------------------------------------------------- the table
def pooled(results: Path) -> Dict[str, Dict]:
    """{prompt: {mIoU, stability, alpha1, objects}} of the one model of an eval folder, the
    datasets of the held-out SPEC pooled (weighted by their objects)."""
    rows = json.loads((results / "results.json").read_text())["rows"]
    out: Dict[str, Dict] = {}
    for prompt in dict.fromkeys(r["prompt"] for r in rows):
        mine = [r for r in rows if r["prompt"] == prompt]
        n = sum(r["objects"] for r in mine)
        entry = {"objects": n}
        for key in ("mIoU", "stability", "alpha1"):
            have = [r for r in mine if r.get(key) is not None]
            w = sum(r["objects"] for r in have)
            entry[key] = sum(r[key] * r["objects"] for r in have) / w if have else None
        out[prompt] = entry
    return out


def compare(base: Dict[str, Dict], model: Dict[str, Dict]) -> Dict:
    """The table's quantities for one fold: a variant against the base on the same prompts."""
    def d(prompt: str, key: str = "mIoU") -> Optional[float]:
        a, b = model.get(prompt, {}).get(key), base.get(prompt, {}).get(key)
        return None if a is None or b is None else 100 * (a - b)

    prompts = [p for p in base if p in model]
    gap = base[GT]["mIoU"] - base[NOISY]["mIoU"] if GT in base and NOISY in base else None
    stab = [d(p, "stability") for p in prompts if d(p, "stability") is not None]
    alpha = {p: model[p].get("alpha1") for p in prompts}
    return {
        "d_gt": d(GT), "d_noisy": d(NOISY), "d_click": d(CLICK),
        "gap_closed": d(NOISY) / (100 * gap) if d(NOISY) is not None and gap and gap > 0 else None,
        "d_mean": sum(d(p) for p in prompts) / len(prompts) if prompts else None,
        "d_stability": sum(stab) / len(stab) if stab else None,
        "alpha": alpha,
        "alpha_gap": alpha[NOISY] - alpha[GT] if alpha.get(NOISY) is not None and alpha.get(GT) is not None else None,
    }


def summary(per_fold: Dict[str, Dict]) -> tuple:
    """(mean over folds, worst fold) of each quantity; the worst names its fold."""
    mean, worst = {}, {}
    for key in COLUMNS + ("alpha_gap",):
        values = {f: r[key] for f, r in per_fold.items() if r.get(key) is not None}
        mean[key] = sum(values.values()) / len(values) if values else None
        if values:
            fold = min(values, key=values.get)
            worst[key] = {"value": values[fold], "fold": fold}
    prompts = dict.fromkeys(p for r in per_fold.values() for p in r["alpha"])
    mean["alpha"] = {}
    for p in prompts:
        values = [r["alpha"].get(p) for r in per_fold.values() if r["alpha"].get(p) is not None]
        mean["alpha"][p] = sum(values) / len(values) if values else None
    return mean, worst


def fmt(value: Optional[float], kind: str = "points") -> str:
    if value is None:
        return "—"
    if kind == "share":
        return f"{100 * value:.0f} %"
    if kind == "alpha":
        return f"{value:.3f}"
    if kind == "alpha_gap":
        return f"{value:+.3f}"
    return f"{value:+.2f}"


KINDS = {"gap_closed": "share", "alpha_gap": "alpha_gap"}


def table_row(label: str, fold: str, r: Dict) -> str:
    def cell(key):
        v = r.get(key)
        return fmt(v["value"] if isinstance(v, dict) else v, KINDS.get(key, "points"))

    alpha = r.get("alpha", {})
    return (f"| {label} | {fold} | " + " | ".join(cell(k) for k in COLUMNS)
            + " | " + " / ".join(fmt(alpha.get(p), "alpha") for p in (GT, NOISY, CLICK)) + f" | {cell('alpha_gap')} |")


def build_table(out: Path, folds: List[str], variants: List[str], prompts: List[str], meta: Dict) -> Dict:
    """Read every finished evaluation under OUT; write OUT/lodo.json and OUT/lodo.md."""
    done = [f for f in folds if (out / f / "base" / "eval" / "results.json").is_file()]
    base = {f: pooled(out / f / "base" / "eval") for f in done}
    report = {"meta": meta, "base": base, "variants": {}}
    lines = ["# Leave-one-dataset-out", "", f"`{meta['command']}`", "",
             "Each fold trains on every other dataset and scores the held-out one. Δ: mIoU change against the "
             "base (points); gap closed: share of the base's gt-box → noisy-box@0.4 gap; Δ stability: points, "
             "mean over the prompt types that have one; α: the DRP's weight of the deformed features "
             "(gt-box / noisy-box@0.4 / points@1), α gap = α(noisy-box@0.4) − α(gt-box). Mean: each fold "
             "weighs the same; worst: each column's worst fold.", "",
             "| variant | fold | Δ gt-box | Δ noisy-box@0.4 | gap closed | Δ points@1 | Δ mean | Δ stability "
             "| α gt / noisy / click | α gap |", "|" + "---|" * 10]
    for name in variants:
        per_fold = {}
        for f in folds:
            if f in base and (out / f / name / "eval" / "results.json").is_file():
                scores = pooled(out / f / name / "eval")
                per_fold[f] = {**compare(base[f], scores), "scores": scores}
        if not per_fold:
            continue
        mean, worst = summary(per_fold)
        report["variants"][name] = {"folds": per_fold, "mean": mean, "worst": worst,
                                    "finished": f"{len(per_fold)} of {len(folds)} folds"}
        for f, r in per_fold.items():
            lines.append(table_row(name, f, r))
        lines.append(table_row(f"**{name}**", f"**mean** ({len(per_fold)} of {len(folds)})", mean))
        lines.append(table_row(f"**{name}**", "**worst**", {**worst, "alpha": {}}))
    lines += ["", "Base mIoU per fold:", "", "| fold | " + " | ".join(prompts) + " |",
              "|" + "---|" * (len(prompts) + 1)]
    for f, scores in base.items():
        lines.append(f"| {f} | " + " | ".join(fmt(scores.get(p, {}).get("mIoU"), "alpha") for p in prompts) + " |")
    write_text(out / "lodo.json", json.dumps(report, indent=2))
    write_text(out / "lodo.md", "\n".join(lines) + "\n")
    return report


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, metavar="SPEC", help="dataset SPECs, one fold each (>= 2)")
    p.add_argument("--model", default="tiny-sam", metavar="SPEC",
                   help="the base SAM, without plugins (default tiny-sam)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                   help="a `stablesam train` argument set (repeat); e.g. 'default=--epochs 4'")
    p.add_argument("--derived", action="append", default=[], metavar="NAME=VARIANT:OPTIONS",
                   help="a plugin variant's file with decode-time options, e.g. 'strong_iou=strong:selector=iou'")
    p.add_argument("--train-split", default=None, metavar="FILE", help="split list of the training objects")
    p.add_argument("--eval-split", default=None, metavar="FILE", help="split list of the held-out objects")
    p.add_argument("--prompts", default=DEFAULT_PROMPTS, help=f"prompt types (default {DEFAULT_PROMPTS})")
    p.add_argument("--samples", type=int, default=20, metavar="K", help="prompts per object and type (default 20)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (a variant's training seed is its --seed)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="score the first N held-out objects only")
    p.add_argument("--folds", default=None, metavar="LIST", help="run only these folds (held-out names); the "
                   "table covers every finished fold")
    p.add_argument("--table-only", action="store_true",
                   help="run nothing: write the table from the evaluations already finished")
    p.add_argument("--data-root", default=None, metavar="DIR", help="as in `stablesam eval`")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache (shared by every run)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", required=True, metavar="DIR")
    args = p.parse_args(argv)
    try:
        if len(args.data) < 2:
            raise LodoError("--data needs at least two dataset SPECs")
        if "+" in args.model:
            raise LodoError(f"--model {args.model}: the base must not carry plugin or decoder weights")
        variants = [parse_variant(v) for v in args.variant]
        derived = [parse_derived(d, variants) for d in args.derived]
        if len({v[0] for v in variants} | {d[0] for d in derived}) != len(variants) + len(derived):
            raise LodoError("two variants share a name")
        names = [fold_name(spec, args.data_root) for spec in args.data]
        if len(set(names)) != len(names):
            raise LodoError(f"the --data SPECs open datasets of the same name: {names}")
        chosen = names if args.folds is None else [f.strip() for f in args.folds.split(",") if f.strip()]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise LodoError(f"--folds {unknown}: not among the datasets {names}")
        runtime = [*(["--cache", args.cache] if args.cache else []),
                   *(["--device", args.device] if args.device else []),
                   *(["--data-root", args.data_root] if args.data_root else [])]
        for spec, fold in zip(args.data, names):
            if fold in chosen and not args.table_only:
                run_fold(spec, fold, [s for s in args.data if s != spec], variants, args, runtime, derived)
    except LodoError as e:
        print(f"lodo: error: {e}", file=sys.stderr)
        return 2
    meta = {"command": "python scripts/lodo.py " + shlex.join(sys.argv[1:] if argv is None else argv),
            "samples": args.samples, "seed": args.seed, "eval_split": args.eval_split,
            "train_split": args.train_split, "variants": {n: a for n, a, _ in variants}}
    build_table(Path(args.out), names, [v[0] for v in variants] + [d[0] for d in derived], args.prompts.split(","), meta)
    print((Path(args.out) / "lodo.md").read_text())
    print(f"wrote {Path(args.out) / 'lodo.md'} and {Path(args.out) / 'lodo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
