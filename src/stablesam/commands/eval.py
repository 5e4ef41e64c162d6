"""`stablesam eval`: score models on datasets (prompt and click protocols) and write the reports."""

import argparse

from .. import __version__
from ..evaluation.click_eval import ClickConfig
from ..evaluation.prompt_eval import EvalConfig
from .common import (
    UsageError, add_data_options, input_errors_as_usage, add_runtime_options, check_out_folder, config_option, open_cache, open_datasets,
    package_version,
)


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.spec import ACCEPTED, DEFAULT_SPEC
    from ..prompts.generation import DEFAULT_PROMPTS

    ev = sub.add_parser("eval", help="prompt-robustness benchmark: models x datasets x prompt types",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=ACCEPTED)
    add_data_options(ev)
    ev.add_argument("--model", action="append", metavar="SPEC",
                    help=f"a model SPEC (repeat to compare; default {DEFAULT_SPEC})")
    ev.add_argument("--prompts", default=DEFAULT_PROMPTS, help=f"comma-separated prompt types (default {DEFAULT_PROMPTS})")
    config_option(ev, "--samples", EvalConfig, "samples", "prompts per object and type (default {default})", type=int,
                  metavar="K")
    config_option(ev, "--adv-budget", EvalConfig, "adv_budget", "adv-box@R, best-box@R, adv-point: prompts each model's "
                  "search tries per object, each one decoder pass unless gt-box / noisy-box@R already decoded it "
                  "(default {default})", type=int, metavar="N")
    config_option(ev, "--seed", EvalConfig, "seed", "", type=int)
    ev.add_argument("--limit", type=int, default=None, metavar="N", help="first N objects of each dataset")
    ev.add_argument("--out", default="stablesam-eval", metavar="DIR", help="output folder, new or empty unless --force (default ./stablesam-eval)")
    ev.add_argument("--multimask", action="store_true", help="3 masks per prompt, keep the best predicted IoU")
    config_option(ev, "--explain", EvalConfig, "explain",
                  "record where the mask token looks (layer-2 token-to-image attention): the share inside "
                  "the object per prompt type in the tables, and explain.png for N objects", type=int, metavar="N")
    ev.add_argument("--protocol", default="prompts", metavar="LIST",
                    help="prompts (K random prompts per type, the default), clicks (the f-BRS/RITM simulated user: "
                         "NoC, NoF, mIoU per click) or prompts,clicks")
    config_option(ev, "--max-clicks", ClickConfig, "max_clicks", "clicks protocol: clicks per object (default {default})",
                  type=int, metavar="N")
    config_option(ev, "--iou-thresholds", ClickConfig, "thresholds",
                  "clicks protocol: IoU targets of NoC / NoF (default {default})", to_cli=thresholds_text,
                  show=thresholds_text, metavar="LIST")
    add_runtime_options(ev)
    ev.set_defaults(func=input_errors_as_usage(run_eval))


def thresholds_text(thresholds) -> str:
    """(0.85, 0.9) -> '0.85,0.9' (what --iou-thresholds takes)."""
    return ",".join(f"{t:g}" for t in thresholds)


def run_eval(args: argparse.Namespace) -> int:
    import platform
    import shlex
    from pathlib import Path

    import numpy as np
    import torch

    from ..evaluation.click_eval import ClickEvaluator
    from ..evaluation.evaluator import run_evaluator
    from ..evaluation.prompt_eval import PromptEvaluator
    from ..models.spec import DEFAULT_SPEC, SpecError, build_segmenter, parse_model_spec
    from ..prompts.generation import parse_prompts
    from ..evaluation.reports import markdown_tables, write_reports

    from ..evaluation.click_eval import click_tables, parse_thresholds

    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    unknown = sorted(set(protocols) - {"prompts", "clicks"})
    if unknown or not protocols:
        raise UsageError(f"--protocol {args.protocol!r}: expected prompts, clicks or prompts,clicks")
    try:
        prompts = parse_prompts(args.prompts)
        thresholds = parse_thresholds(args.iou_thresholds)
    except ValueError as e:
        raise UsageError(f"--prompts / --iou-thresholds: {e}") from None
    from .. import limits

    try:
        for limit, value in ((limits.EXPLAIN, args.explain), (limits.MAX_CLICKS, args.max_clicks),
                             (limits.SAMPLES, args.samples), (limits.ADV_BUDGET, args.adv_budget),
                             (limits.SEED, args.seed), (limits.LIMIT, args.limit)):
            if value is not None:
                limit.check(value)
        if args.device is not None:
            limits.checked_device(args.device)
    except limits.RangeError as e:
        raise UsageError(str(e)) from None
    specs = []
    for text in args.model or [DEFAULT_SPEC]:
        try:
            specs.append(parse_model_spec(text))
        except SpecError as e:
            raise UsageError(str(e)) from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"--model given twice: {names}")
    check_out_folder(args.out, args.force)
    datasets = open_datasets(args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cache = open_cache(args)
    try:
        segmenters = [build_segmenter(s, cache, args.device, args.force_plugin, args.seed) for s in specs]
    except SpecError as e:
        raise UsageError(str(e)) from None
    for seg in segmenters:  # the decoder's autocast (--precision); GrabCut has none
        if hasattr(seg, "precision"):
            seg.precision = args.precision
    click_config = ClickConfig(args.max_clicks, thresholds, args.limit)
    evaluators = {}  # protocol -> evaluator, the prompt protocol first
    try:
        if "prompts" in protocols:
            evaluators["prompts"] = PromptEvaluator(segmenters, EvalConfig(
                prompts, args.samples, args.seed, args.limit, args.multimask, explain=args.explain,
                adv_budget=args.adv_budget))
        if "clicks" in protocols:
            evaluators["clicks"] = ClickEvaluator(segmenters, click_config)
    except ValueError as e:
        raise UsageError(str(e)) from None
    results = {name: run_evaluator(datasets, evaluator) for name, evaluator in evaluators.items()}
    result, clicks = results.get("prompts"), results.get("clicks")
    if (result is not None and not result.rows) or (clicks is not None and not clicks.rows):
        raise UsageError("no object could be evaluated (see the warnings above)")
    versions = {"stablesam": __version__, "torch": torch.__version__, "numpy": np.__version__,
                "segment-anything": package_version("segment-anything"), "python": platform.python_version()}
    bad_files = [{"dataset": ds.name, "problem": problem} for ds in datasets for problem in ds.problems]
    meta = {"protocols": protocols, "samples": args.samples, "seed": args.seed, "adv_budget": args.adv_budget,
            "prompts": [p.name for p in prompts] if result is not None else [],
            "command": "stablesam " + shlex.join(args.argv), "versions": versions,
            "multimask": args.multimask, "bad_files": bad_files}
    models = [s.name for s in segmenters]
    try:
        files = write_reports(result, models, Path(args.out), meta, clicks, click_config)
    except OSError as e:
        raise UsageError(f"cannot write {e.filename or args.out}: {e.strerror or e}") from None
    if result is not None:
        print(markdown_tables(result, models))
    if clicks is not None:
        print(click_tables(clicks.rows, click_config))
    print(f"encoder runs: {cache.encoder_calls} (cache: {cache.root or 'memory only'})")
    if bad_files:
        print(f"skipped {len(bad_files)} bad files or objects (listed under bad_files in results.json)")
    print("wrote " + ", ".join(str(f) for f in files.values()))
    return 0
