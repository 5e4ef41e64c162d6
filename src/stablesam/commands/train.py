"""`stablesam train`: Stable-SAM's plugins (or the whole decoder, the DT baseline) on cached
embeddings, one process or torchrun, resumable; optional validation of the result."""

import argparse
import math
import sys
from dataclasses import dataclass
from typing import List, Optional

from .. import __version__
from ..modeling.plugin_config import FIT_GATES, PluginConfig
from ..training.record import DEFAULT_LR, TrainConfig
from ..training.routing_terms import OFF, RoutingTerms
from ..training.rts import RELEASE_0_1, RtsMixture
from .common import (
    UsageError, add_data_options, input_errors_as_usage, add_runtime_options, check_out_folder, config_option, field_default, open_cache, shown,
    open_datasets,
)


@dataclass
class ValidationConfig:
    """`--val`: the short eval of the base and the trained weights at the end of a run."""

    prompts: str = "gt-box,noisy-box@0.4,points@1,points@3"
    samples: int = 5


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.spec import DEFAULT_SPEC

    def plugin(name: str) -> str:  # a plugin option's default, as its help writes it
        return g(field_default(PluginConfig, name))

    tr = sub.add_parser("train", help="train the Stable-SAM plugins (or the decoder, DT baseline) with RTS",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="Scale out with torchrun: torchrun --nproc_per_node N -m stablesam train ...")
    add_data_options(tr)
    tr.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC",
                    help=f"the SAM to adapt (default {DEFAULT_SPEC}: plugins continue from the shipped ones; "
                         "--tune decoder always trains with the plugins off)")
    tr.add_argument("--out", required=True, metavar="DIR",
                    help="weights, config, log, loss curve, checkpoint: a new or empty folder (or --resume, --force)")
    tr.add_argument("--tune", choices=["plugins", "decoder", "prompt+decoder"], default="plugins",
                    help="plugins: Stable-SAM's DSP + DRP only; decoder: the whole mask decoder (DT baseline); "
                         "prompt+decoder: the prompt encoder too (with interactive=W in --rts-mixture: SAM's "
                         "interactive training, mask_input included)")
    length = tr.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None, help="passes over the objects (default 1)")
    length.add_argument("--steps", type=int, default=None, help="optimizer steps (instead of --epochs)")
    config_option(tr, "--batch-size", TrainConfig, "batch_size", "objects per step, over all processes (default {default})",
                  type=int)
    tr.add_argument("--lr", type=float, default=None,
                    help="Adam learning rate (default: " + ", ".join(f"{shown(v)} with --tune {k}" for k, v in DEFAULT_LR.items())
                    + ")")
    config_option(tr, "--seed", TrainConfig, "seed", "", type=int)
    config_option(tr, "--augment", TrainConfig, "augment", "augmented views per object (a crop around it, a flip, "
                  "colour jitter; each embedded once and cached), each step takes one of them or the original "
                  "(default {default}: none)", type=int, metavar="N")
    tr.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    tr.add_argument("--stream-embeddings", action="store_true",
                    help="read each step's embeddings from the disk cache instead of holding all of them in "
                         "memory (data larger than the RAM, e.g. HQSeg-44K with ViT-L: about 93 GB); same weights")
    tr.add_argument("--snapshot-epochs", default=None, metavar="E1,E2,...",
                    help="also write the weights after these many epochs (OUT/plugin_epochsE.pt): with the "
                         "constant learning rate each equals a run of that length")
    config_option(tr, "--checkpoint-every", TrainConfig, "checkpoint_every", "steps between checkpoints", type=int,
                  metavar="N")
    tr.add_argument("--no-rts", action="store_true", help="ablation: ground-truth boxes only")
    tr.add_argument("--rts-mixture", default=None,
                    help=f"prompt mixture (default {RtsMixture().text()}; release 0.1: {RELEASE_0_1.text()}; "
                         "interactive=W adds SAM's corrective-click sessions, "
                         f"{', '.join(RtsMixture().text((k,)) for k in ('interactive-clicks', 'deepest-clicks'))})")
    tr.add_argument("--no-drp", action="store_true", help="ablation: DSP without DRP (fixed α = 0.5, 0.5)")
    tr.add_argument("--offset-range", type=float, default=None, help=f"max |Δp| in embedding cells (default {plugin('offset_range')})")
    tr.add_argument("--sampled-pe", action="store_true", help="sample the PE at p + Δp too (default: grid PE)")
    tr.add_argument("--routing-token", choices=["mask", "iou", "mean"], default=None,
                    help="output token driving the DRP (default: the single-mask token)")
    tr.add_argument("--routing-hidden", type=int, default=None, metavar="N", help=f"hidden width of the DRP's MLP (default {plugin('routing_hidden')})")
    tr.add_argument("--no-projection", action="store_true",
                    help="extension: no 1x1 conv before the offsets and the sampling (x* = x; 66k fewer parameters)")
    tr.add_argument("--projection-rank", type=int, default=None, metavar="R",
                    help=f"the 1x1 projection as identity + rank R (default {plugin('projection_rank')}; 0: a full matrix, the paper)")
    tr.add_argument("--offset-width", type=int, default=None, metavar="R",
                    help=f"the offset net works on R channels (a 1x1 conv to R first; default {plugin('offset_width')}; 0: all, the paper)")
    tr.add_argument("--amplitude", action="store_true",
                    help="extension: the DSP also predicts a per-cell amplitude of the sampled features")
    tr.add_argument("--offset-groups", type=int, default=None, metavar="G",
                    help=f"extension: G channel groups with their own offsets (8: one per attention head; default {plugin('offset_groups')})")
    tr.add_argument("--extra-sites", default="", metavar="LIST",
                    help="extension: more attentions with their own DSP + DRP: layer1, final (default: layer 2 only)")
    config_option(tr, "--routing-inputs", PluginConfig, "routing_inputs",
                  "the DRP also reads: prompt (the prompt's own tokens, pooled), iou (the IoU token), fit "
                  "(how tightly a box fits the frozen SAM's mask: one more decoder pass; SAM 1 / HQ-SAM); "
                  "none: the routing token only, as in the paper (default {default})", to_cli=",".join,
                  show=",".join, metavar="LIST")
    tr.add_argument("--fit-gate", choices=FIT_GATES, default=None,
                    help="with the routing input fit: both (loose boxes open the DSP, tight ones close it) or "
                         f"close (tight boxes close it, loose ones are left to the DRP; default {field_default(PluginConfig, 'fit_gate')})")
    tr.add_argument("--fit-gate-lr", type=float, default=None, metavar="LR",
                    help="Adam's learning rate for the fit gate's scale and centre (default: --lr; Adam moves a "
                         "parameter about lr per step, so at lr 1e-4 the gate hardly moves in an epoch)")
    tr.add_argument("--routing-temperature", type=float, default=None, metavar="T",
                    help=f"α = softmax(z / T) (default {plugin('routing_temperature')})")
    # The terms act on the plugins: their defaults apply to --tune plugins (None here: decoder
    # tuning trains without them).
    config_option(tr, "--consistency", RoutingTerms, "consistency", "for gt-box and near-gt box prompts, match the "
                  "frozen base's logits (self-distillation; plugins, default {default})", to_cli=lambda v: None,
                  show=g, type=float, metavar="W")
    config_option(tr, "--alpha-prior", RoutingTerms, "alpha_prior", "for gt-box and near-gt box prompts, push "
                  "α(deformed) to 0 (plugins, default {default})", to_cli=lambda v: None, show=g, type=float,
                  metavar="W")
    config_option(tr, "--offset-reg", RoutingTerms, "offset_reg", "penalise the mean squared offset, in units of "
                  "--offset-range (plugins, default {default}: off)", to_cli=lambda v: None, show=g, type=float,
                  metavar="W")
    config_option(tr, "--alpha-far", RoutingTerms, "alpha_far", "for far prompts (see --far) push α(deformed) to "
                  "1, so the routing learns prompt quality from both sides (plugins, default {default}: off)",
                  to_cli=lambda v: None, show=g, type=float, metavar="W")
    config_option(tr, "--far", RoutingTerms, "far", "box prompts with noise scale >= S, and prompts of clicks alone, "
                  "count as far for --alpha-far (default {default})", show=g, type=float, metavar="S")
    config_option(tr, "--near-gt", RoutingTerms, "near_gt", "box prompts with noise scale <= S count as near-gt for "
                  "--consistency and --alpha-prior (default {default})", show=g, type=float, metavar="S")
    tr.add_argument("--val", nargs="+", default=None, metavar="PATH", help="datasets for a short eval at the end")
    tr.add_argument("--val-split", default=None, metavar="FILE", help="split list for --val")
    config_option(tr, "--val-prompts", ValidationConfig, "prompts", "")
    config_option(tr, "--val-samples", ValidationConfig, "samples", "", type=int)
    tr.add_argument("--val-limit", type=int, default=None)
    add_runtime_options(tr)
    tr.set_defaults(func=input_errors_as_usage(run_train))


def g(value: float) -> str:
    return f"{value:g}"


def init_distributed(device_arg: Optional[str]):
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join the process group (NCCL on GPUs, gloo on
    CPUs). Returns (device, rank, world)."""
    import os

    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and (device_arg is None or device_arg.startswith("cuda"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        device = f"cuda:{local}" if world > 1 else (device_arg or "cuda")
        torch.cuda.set_device(torch.device(device))
    else:
        device = device_arg or "cpu"
    rank = dist.get_rank() if world > 1 else 0
    return device, rank, world


def parse_snapshot_epochs(text: Optional[str]) -> List[float]:
    """--snapshot-epochs "1,4,16" -> [1.0, 4.0, 16.0] (positive, finite, distinct)."""
    if not text:
        return []
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--snapshot-epochs takes numbers like 1,4,16, got {text!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in values) or len(set(values)) != len(values):
        raise UsageError(f"--snapshot-epochs takes distinct positive numbers, got {text!r}")
    return sorted(values)


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch
    import torch.distributed as dist

    from ..modeling import StableSam
    from ..models.spec import SpecError, build_model, parse_model_spec
    from ..training.record import ResumeMismatch, TrainingError, read_checkpoint
    from ..training.objects import prepare_objects, warm_cache
    from ..training.loop import train, tuned_modules

    from .. import limits

    try:
        for limit, value in ((limits.SEED, args.seed), (limits.BATCH_SIZE, args.batch_size),
                             (limits.LEARNING_RATE, args.lr), (limits.STEPS, args.steps),
                             (limits.EPOCHS, args.epochs), (limits.CHECKPOINT_EVERY, args.checkpoint_every),
                             (limits.AUGMENT, args.augment), (limits.SAMPLES, args.val_samples),
                             (limits.LIMIT, args.val_limit)):
            if value is not None:
                limit.check(value, None if limit is not limits.SAMPLES else "--val-samples")
        if args.fit_gate_lr is not None:
            limits.LEARNING_RATE.check(args.fit_gate_lr, "--fit-gate-lr")
        if args.device is not None:
            limits.checked_device(args.device)
        for flag in ("consistency", "alpha_prior", "offset_reg", "alpha_far"):
            if getattr(args, flag) is not None:
                limits.LOSS_WEIGHT.check(getattr(args, flag), "--" + flag.replace("_", "-"))
    except limits.RangeError as e:
        raise UsageError(str(e)) from None
    finite = [v for v in (args.lr, args.fit_gate_lr, args.offset_range, args.epochs, args.routing_temperature)
              if v is not None]
    if not all(math.isfinite(v) for v in finite) or (args.offset_range is not None and args.offset_range <= 0):
        raise UsageError("--lr, --fit-gate-lr, --epochs, --offset-range and --routing-temperature must be finite "
                         "numbers (and --offset-range positive)")
    if args.fit_gate_lr is not None and args.fit_gate_lr <= 0:
        raise UsageError(f"--fit-gate-lr must be positive, got {args.fit_gate_lr}")
    if args.batch_size < 1 or (args.lr is not None and args.lr <= 0) or (args.steps is not None and args.steps < 1) or \
            (args.epochs is not None and args.epochs <= 0) or args.checkpoint_every < 1:
        raise UsageError("--batch-size, --steps, --epochs, --checkpoint-every and --lr must be positive")
    snapshot_epochs = parse_snapshot_epochs(args.snapshot_epochs)
    try:
        spec = parse_model_spec(args.model)
        if spec.base == "grabcut":
            raise SpecError("grabcut has nothing to train")
        mixture = RtsMixture.parse(args.rts_mixture) if args.rts_mixture else RtsMixture()
        if args.val:  # read now: a bad list would otherwise stop the run only after training
            from ..prompts.generation import parse_prompts

            parse_prompts(args.val_prompts)
        sites = tuple(x.strip() for x in args.extra_sites.split(",") if x.strip()) if args.extra_sites else ()
        inputs = tuple(x.strip() for x in args.routing_inputs.split(",") if x.strip() not in ("", "none"))
        given = {"offset_range": args.offset_range, "routing_token": args.routing_token,
                 "routing_hidden": args.routing_hidden, "offset_width": args.offset_width,
                 "projection_rank": args.projection_rank, "offset_groups": args.offset_groups,
                 "routing_temperature": args.routing_temperature, "fit_gate": args.fit_gate}
        plugin_config = PluginConfig(sampled_pe=args.sampled_pe, use_routing=not args.no_drp,
                                     amplitude=args.amplitude, projection=not args.no_projection,
                                     extra_sites=sites, routing_inputs=inputs,
                                     **{k: v for k, v in given.items() if v is not None})
        if not plugin_config.reads_fit and (args.fit_gate or args.fit_gate_lr is not None):
            raise UsageError("--fit-gate and --fit-gate-lr need the routing input fit (--routing-inputs ...,fit)")
        given_terms = {"consistency": args.consistency, "alpha_prior": args.alpha_prior, "offset_reg": args.offset_reg,
                       "alpha_far": args.alpha_far}
        if args.tune != "plugins":
            if any(v for v in given_terms.values()):
                raise ValueError("--consistency, --alpha-prior, --alpha-far and --offset-reg act on the plugins: "
                                 "use --tune plugins")
            given_terms = {k: getattr(OFF, k) for k in given_terms}
        terms = RoutingTerms(**{k: v for k, v in given_terms.items() if v is not None}, near_gt=args.near_gt,
                             far=args.far)
    except (SpecError, ValueError) as e:
        raise UsageError(str(e)) from None
    out = Path(args.out)
    if (out / "checkpoint.pt").exists() and not (out / "checkpoint.pt").is_file():
        raise UsageError(f"{out / 'checkpoint.pt'} is not a file; pick another --out")
    if (out / "checkpoint.pt").is_file() and not (args.resume or args.force):
        raise UsageError(f"{out} already holds a training run; pass --resume to continue it, --force to start "
                         "a new one over its files, or pick another --out")
    # a new or empty folder; with --resume the run it holds; with --force any folder (its other files kept)
    check_out_folder(args.out, args.force or (args.resume and (out / "checkpoint.pt").is_file()),
                     ", --resume to continue the run it holds")
    datasets = open_datasets(args)
    device, rank, world = init_distributed(args.device)
    resume = args.resume and (out / "checkpoint.pt").is_file()
    if args.resume and not resume and rank == 0:
        print(f"stablesam train: warning: --resume: {out} holds no checkpoint.pt; starting a new run from step 0",
              file=sys.stderr)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    try:
        model = build_model(spec, device, args.force_plugin)
    except SpecError as e:
        raise UsageError(str(e)) from None
    if args.tune == "plugins" and model.plugins_enabled and model.config != plugin_config:
        raise UsageError(f"{spec.text} carries a plugin with config {model.config.to_dict()}; the plugin options "
                         f"given ask for {plugin_config.to_dict()}: train fresh plugins on the base SPEC instead "
                         "(e.g. tiny-sam) or drop those options")
    if args.tune == "plugins" and not model.plugins_enabled:  # fresh plugins with the asked config
        model.remove_hooks()
        torch.manual_seed(args.seed)
        model = StableSam(model.sam, plugin_config).to(device)
    config = TrainConfig(
        model=spec.text, data=[str(Path(p).resolve().name) for p in args.data], tune=args.tune,
        total_steps=args.steps or 0, batch_size=args.batch_size, lr=args.lr, seed=args.seed, rts=not args.no_rts,
        mixture=mixture.to_dict(), plugin=model.config.to_dict(), checkpoint_every=args.checkpoint_every,
        terms=terms.to_dict(), augment=args.augment, fit_gate_lr=args.fit_gate_lr, precision=args.precision,
    )
    if resume:  # a bad checkpoint is refused before any embedding
        try:
            read_checkpoint(out / "checkpoint.pt", config, ignore=() if args.steps else ("total_steps",))
        except ResumeMismatch as e:
            raise UsageError(str(e)) from None
    check_training_memory(model, mixture, args.batch_size, world, device)
    cache = open_cache(args)
    if world > 1 and cache.root is not None:  # each process embeds its share, then all read the cache
        warm_cache(datasets, model, cache, rank, world, progress=rank == 0, augment=args.augment, seed=args.seed)
        dist.barrier()
    if args.stream_embeddings and (cache.root is None or cache.read_only):
        raise UsageError("--stream-embeddings needs an embedding cache that can be written (--cache DIR, not --no-cache)")
    objects = prepare_objects(datasets, model, cache, progress=rank == 0, augment=args.augment, seed=args.seed,
                              stream=args.stream_embeddings)
    if not objects:
        raise UsageError("the training data holds no usable object (see the warnings above)")
    per_epoch = math.ceil(len(objects) / args.batch_size)
    if args.steps is None:
        config.total_steps = math.ceil((args.epochs or 1) * per_epoch)
    for epochs in snapshot_epochs:
        step = math.ceil(epochs * per_epoch)
        if step >= config.total_steps:
            raise UsageError(f"--snapshot-epochs {epochs:g} is not before the end of training "
                             f"({config.total_steps} steps = {config.total_steps / per_epoch:g} epochs)")
        config.snapshots[step] = f"{weights_stem(args.tune)}_epochs{epochs:g}"
    steps = config.total_steps
    if rank == 0:
        trainable = sum(p.numel() for p in (model.plugin_parameters() if args.tune == "plugins" else
                                            (q for m in tuned_modules(model, args.tune).values() for q in m.parameters())))
        print(f"training {args.tune} ({trainable:,} parameters) of {spec.text} on {len(objects)} objects, "
              f"{steps} steps of {args.batch_size}, {world} process(es) on {device}; "
              f"encoder runs: {cache.encoder_calls}")
    try:
        result = train(model, objects, config, out, resume=resume, progress=rank == 0, base_name=spec.base_name)
    except ResumeMismatch as e:
        raise UsageError(str(e)) from None
    except (TrainingError, OSError) as e:
        what = f"cannot write {e.filename or out}: {e.strerror or e}" if isinstance(e, OSError) else e
        print(f"stablesam train: error: {what}", file=sys.stderr)
        return 1
    if rank == 0:
        print(f"wrote {result['files']['weights']} (final loss {result['log'][-1]['loss']:.4f})"
              if result["log"] else f"wrote {result['files']['weights']}")
        if args.val:
            validate(args, spec, out, result["files"]["weights"], device)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def check_training_memory(model, mixture: RtsMixture, batch_size: int, world: int, device) -> None:
    """UsageError when one training step of this process would not fit in the device's free
    memory: its share of --batch-size, each object through the decoder with gradient (interactive
    sessions: one pass per round), the tokens its clicks add (`stablesam.limits.decoder_bytes`)."""
    from ..limits import RangeError, check_memory, decoder_bytes

    lh, lw = model.backend.mask_input_size(model.sam)
    rates = mixture.rates()
    passes = 1 + rates.get("interactive", 0.0) * (mixture.interactive_clicks + 2)
    tokens = 7 + max(mixture.max_points, mixture.interactive_clicks + 1)
    per_process = math.ceil(batch_size / world)
    need = int(decoder_bytes(per_process, (lh // 4) * (lw // 4), tokens, model.config.embed_dim) * passes)
    try:
        check_memory(need, device, f"a training step of --batch-size {batch_size}"
                     + (f" ({per_process} per process)" if world > 1 else ""), "--batch-size"
                     + (" or interactive-clicks in --rts-mixture" if rates.get("interactive", 0.0) > 0 else ""))
    except RangeError as e:
        raise UsageError(str(e)) from None


def weights_stem(tune: str) -> str:
    """The weights file a --tune writes (OUT/STEM.pt) and the SPEC suffix that loads it."""
    return "plugin" if tune == "plugins" else "decoder"


def validate(args: argparse.Namespace, spec, out, weights, device) -> None:
    """A short eval of the base and the trained weights on --val data, printed and saved."""
    from pathlib import Path

    from ..evaluation.prompt_eval import EvalConfig, evaluate
    from ..models.spec import DEFAULT_SPEC, build_segmenter, parse_model_spec
    from ..prompts.generation import parse_prompts
    from ..evaluation.reports import markdown_tables, write_reports

    base_text = "tiny-sam" if spec.base == DEFAULT_SPEC else spec.text.split("+")[0]
    trained = parse_model_spec(f"{base_text}+{weights_stem(args.tune)}={weights}")
    specs = [parse_model_spec(base_text), trained]
    cache = open_cache(args)
    segs = [build_segmenter(s, cache, device, args.force_plugin) for s in specs]
    val_args = argparse.Namespace(**{**vars(args), "data": args.val, "split": args.val_split})
    config = EvalConfig(parse_prompts(args.val_prompts), args.val_samples, args.seed, args.val_limit)
    result = evaluate(open_datasets(val_args), segs, config)
    meta = {"samples": args.val_samples, "seed": args.seed, "command": "stablesam " + " ".join(args.argv),
            "versions": {"stablesam": __version__}}
    write_reports(result, [s.name for s in segs], Path(out) / "val", meta)
    print(markdown_tables(result, [s.name for s in segs]))
