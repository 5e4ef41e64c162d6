"""The `stablesam` command line."""

import argparse
import math
import contextlib
import sys
import warnings
from typing import Iterator, List, Optional

from . import __version__


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch
    import torchvision

    from .embedded import BASE_FILE, PLUGIN_FILE, WEIGHTS_DIR, embedded_available
    from .modeling import PluginConfig
    from .modeling.deformable_sampling import DeformableSamplingPlugin
    from .modeling.dynamic_routing import DynamicRoutingPlugin
    from .models import ACCEPTED

    sam_version = package_version("segment-anything")
    config = PluginConfig()
    dsp = DeformableSamplingPlugin(config.embed_dim, config.kernel_size, config.offset_range)
    drp = DynamicRoutingPlugin(config.embed_dim, config.routing_hidden)
    n_dsp = sum(p.numel() for p in dsp.parameters())
    n_drp = sum(p.numel() for p in drp.parameters())
    cuda = torch.cuda.is_available()
    print(f"stablesam {__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, segment-anything {sam_version}")
    print(f"device: {'cuda (' + torch.cuda.get_device_name(0) + ')' if cuda else 'cpu'}")
    from .backends import FAMILIES, MissingExtra, require

    def family_state(family: str) -> str:
        try:
            require(family)
            return "installed"
        except MissingExtra:
            return f"not installed (pip install \"stablesam[{FAMILIES[family][3]}]\")"

    print("SAM families: " + "; ".join(f"{FAMILIES[f][4]} {family_state(f)}" for f in FAMILIES))
    print(f"plugin parameters (256-d decoder): {n_dsp + n_drp:,} "
          f"({(n_dsp + n_drp) / 1e6:.3f} M; DSP {n_dsp:,}, DRP {n_drp:,})")
    print(f"default plugin config: {config.to_dict()}")
    print("model SPECs (segment and demo take the SAM ones, not grabcut):")
    print("\n".join(ACCEPTED.splitlines()[1:]))
    if embedded_available():
        from .checkpoints import read_weights

        meta = read_weights(BASE_FILE)["meta"]
        data = meta.get("data", {})
        print(f"  tiny-sam   embedded base ({BASE_FILE.stat().st_size / 1e6:.1f} MB): trained from scratch on "
              f"{', '.join(data.get('datasets', [])) or '?'} ({data.get('train_images', '?')} training images "
              f"of the committed split, {meta.get('steps', '?')} steps, {meta.get('minutes', '?')} min)")
        print(f"  tiny-stable-sam   embedded base + its Stable-SAM plugin ({PLUGIN_FILE.stat().st_size / 1e3:.0f} kB; "
              "the default SPEC)")
    else:
        print("  tiny-sam, tiny-stable-sam   embedded default model (not shipped in this version)")
    print("weights are looked up at:")
    print("  official checkpoints: the PATH given in the model SPEC (nothing is downloaded)")
    print(f"  embedded weights: {WEIGHTS_DIR}")
    for f in (BASE_FILE, PLUGIN_FILE):
        size = f"{f.stat().st_size / 1e6:.2f} MB" if f.is_file() else "missing"
        print(f"    {f.name}: {size}")
    return 0


class UsageError(Exception):
    """Bad input found before work starts: one line on stderr, exit code 2."""


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="SPEC",
                   help="datasets: [NAME=]FOLDER (images/ + masks/, im/ + gt/, ... or images and .png masks side "
                        "by side), [NAME=]IMAGES_DIR:MASKS_DIR, a COCO instance .json, or a list file (.txt/.json) "
                        "of such SPECs")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="relative paths inside list files (and --data SPECs not found here) are taken under DIR")
    p.add_argument("--split", metavar="FILE", help="a split list (lines 'dataset/stem'): use only those objects")
    p.add_argument("--mask-mode", default="auto", choices=["auto", "threshold", "nonzero", "instances"],
                   help="how a mask file becomes objects (default auto: palette PNG -> ids > 0, else > 127)")
    p.add_argument("--threshold", type=int, default=127, help="foreground threshold for --mask-mode threshold")
    p.add_argument("--ignore-value", type=int, default=None, help="mask value meaning ignore (void)")
    p.add_argument("--image-dir", default=None, help="COCO: folder of the images (default: beside the JSON)")
    p.add_argument("--min-area", type=float, default=0.0, help="COCO: skip annotations smaller than this (px)")
    p.add_argument("--strict", action="store_true", help="bad files are errors instead of skipped warnings")


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache folder (default: user cache dir)")
    p.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--force", action="store_true", help="load plugin/decoder files trained for another base")


def open_datasets(args: argparse.Namespace) -> list:
    from .data import DataError, load_split
    from .layouts import parse_spec

    split = load_split(args.split) if args.split else None
    datasets = []
    for spec in args.data:
        try:
            sources = parse_spec(spec, image_dir=args.image_dir, data_root=args.data_root)
        except DataError as e:
            raise UsageError(f"--data {spec}: {e}") from None
        for source in sources:
            options = dict(strict=args.strict, mask_mode=args.mask_mode, threshold=args.threshold,
                           ignore_value=args.ignore_value, min_area=args.min_area)
            if split is not None and source.coco is None:
                stems = split.get(source.name)
                if not stems:
                    raise UsageError(f"--split {args.split} lists no objects of dataset {source.name!r}")
                options["stems"] = stems
            try:
                datasets.append(source.open(**options))
            except DataError as e:
                raise UsageError(str(e)) from None
    return datasets


def cmd_eval(args: argparse.Namespace) -> int:
    import platform
    import shlex
    from pathlib import Path

    import numpy as np
    import torch

    from .cache import EmbeddingCache, default_cache_dir
    from .evaluation import EvalConfig, evaluate
    from .models import DEFAULT_SPEC, SpecError, build_segmenter, parse_model_spec
    from .prompts import parse_prompts
    from .reports import markdown_tables, write_reports

    from .click_eval import ClickConfig, check_clickable, click_tables, evaluate_clicks, parse_thresholds

    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    unknown = sorted(set(protocols) - {"prompts", "clicks"})
    if unknown or not protocols:
        raise UsageError(f"--protocol {args.protocol!r}: expected prompts, clicks or prompts,clicks")
    try:
        prompts = parse_prompts(args.prompts)
        thresholds = parse_thresholds(args.iou_thresholds)
    except ValueError as e:
        raise UsageError(f"--prompts / --iou-thresholds: {e}") from None
    if not 0 <= args.explain <= 1000:
        raise UsageError("--explain must be between 0 and 1000")
    if not 1 <= args.max_clicks <= 1000:
        raise UsageError("--max-clicks must be between 1 and 1000")
    if args.samples < 1:
        raise UsageError("--samples must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    specs = []
    for text in args.model or [DEFAULT_SPEC]:
        try:
            specs.append(parse_model_spec(text))
        except SpecError as e:
            raise UsageError(str(e)) from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"--model given twice: {names}")
    datasets = open_datasets(args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cache = EmbeddingCache(None if args.no_cache else (args.cache or default_cache_dir()))
    try:
        segmenters = [build_segmenter(s, cache, args.device, args.force, args.seed) for s in specs]
    except SpecError as e:
        raise UsageError(str(e)) from None
    click_config = ClickConfig(args.max_clicks, thresholds, args.limit)
    if "clicks" in protocols:
        try:
            check_clickable(segmenters)
        except ValueError as e:
            raise UsageError(str(e)) from None
    result = clicks = None
    if "prompts" in protocols:
        result = evaluate(datasets, segmenters, EvalConfig(prompts, args.samples, args.seed, args.limit, args.multimask,
                                                           explain=args.explain))
    if "clicks" in protocols:
        clicks = evaluate_clicks(datasets, segmenters, click_config)
    if (result is not None and not result.rows) or (clicks is not None and not clicks.rows):
        raise UsageError("no object could be evaluated (see the warnings above)")
    versions = {"stablesam": __version__, "torch": torch.__version__, "numpy": np.__version__,
                "segment-anything": package_version("segment-anything"), "python": platform.python_version()}
    bad_files = [{"dataset": ds.name, "problem": problem} for ds in datasets for problem in ds.problems]
    meta = {"protocols": protocols, "samples": args.samples, "seed": args.seed,
            "prompts": [p.name for p in prompts] if result is not None else [],
            "command": "stablesam " + shlex.join(args.argv), "versions": versions,
            "multimask": args.multimask, "bad_files": bad_files}
    models = [s.name for s in segmenters]
    files = write_reports(result, models, Path(args.out), meta, clicks, click_config)
    if result is not None:
        print(markdown_tables(result, models))
    if clicks is not None:
        print(click_tables(clicks.rows, click_config))
    print(f"encoder runs: {cache.encoder_calls} (cache: {cache.root or 'memory only'})")
    if bad_files:
        print(f"skipped {len(bad_files)} bad files or objects (listed under bad_files in results.json)")
    print("wrote " + ", ".join(str(f) for f in files.values()))
    return 0


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


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch
    import torch.distributed as dist

    from .cache import EmbeddingCache, default_cache_dir
    from .modeling import PluginConfig, StableSam
    from .models import SpecError, build_model, parse_model_spec
    from .rts import RtsMixture
    from .training import ResumeMismatch, TrainConfig, TrainingError, prepare_objects, read_checkpoint, train

    finite = [args.lr, args.offset_range] + ([] if args.epochs is None else [args.epochs])
    if not all(math.isfinite(v) for v in finite) or args.offset_range <= 0:
        raise UsageError("--lr, --epochs and --offset-range must be finite numbers (and --offset-range positive)")
    if args.batch_size < 1 or args.lr <= 0 or (args.steps is not None and args.steps < 1) or \
            (args.epochs is not None and args.epochs <= 0) or args.checkpoint_every < 1:
        raise UsageError("--batch-size, --steps, --epochs, --checkpoint-every and --lr must be positive")
    snapshot_epochs = parse_snapshot_epochs(args.snapshot_epochs)
    try:
        spec = parse_model_spec(args.model)
        if spec.base == "grabcut":
            raise SpecError("grabcut has nothing to train")
        mixture = RtsMixture.parse(args.rts_mixture) if args.rts_mixture else RtsMixture()
        sites = tuple(x.strip() for x in args.extra_sites.split(",") if x.strip()) if args.extra_sites else ()
        plugin_config = PluginConfig(offset_range=args.offset_range, sampled_pe=args.sampled_pe,
                                     routing_token=args.routing_token, use_routing=not args.no_drp,
                                     routing_hidden=args.routing_hidden, amplitude=args.amplitude,
                                     projection=not args.no_projection,
                                     offset_groups=args.offset_groups, extra_sites=sites)
    except (SpecError, ValueError) as e:
        raise UsageError(str(e)) from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise UsageError(f"{out} already holds a training run; pass --resume to continue it or pick another --out")
    datasets = open_datasets(args)
    device, rank, world = init_distributed(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    try:
        model = build_model(spec, device, args.force)
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
    )
    if args.resume and (out / "checkpoint.pt").is_file():  # a bad checkpoint is refused before any embedding
        try:
            read_checkpoint(out / "checkpoint.pt", config, ignore=() if args.steps else ("total_steps",))
        except ResumeMismatch as e:
            raise UsageError(str(e)) from None
    cache = EmbeddingCache(None if args.no_cache else (args.cache or default_cache_dir()))
    if world > 1 and rank != 0:
        dist.barrier()  # rank 0 fills the embedding cache first
    objects = prepare_objects(datasets, model, cache, progress=rank == 0)
    if world > 1 and rank == 0:
        dist.barrier()
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
        config.snapshots[step] = f"{'plugin' if args.tune == 'plugins' else 'decoder'}_epochs{epochs:g}"
    steps = config.total_steps
    if rank == 0:
        trainable = sum(p.numel() for p in (model.plugin_parameters() if args.tune == "plugins"
                                            else model.backend.decoder(model.sam).parameters()))
        print(f"training {args.tune} ({trainable:,} parameters) of {spec.text} on {len(objects)} objects, "
              f"{steps} steps of {args.batch_size}, {world} process(es) on {device}; "
              f"encoder runs: {cache.encoder_calls}")
    try:
        result = train(model, objects, config, out, resume=args.resume, progress=rank == 0, base_name=spec.base_name)
    except ResumeMismatch as e:
        raise UsageError(str(e)) from None
    except TrainingError as e:
        print(f"stablesam train: error: {e}", file=sys.stderr)
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


def validate(args: argparse.Namespace, spec, out, weights, device) -> None:
    """A short eval of the base and the trained weights on --val data, printed and saved."""
    from pathlib import Path

    from .cache import EmbeddingCache, default_cache_dir
    from .evaluation import EvalConfig, evaluate
    from .models import DEFAULT_SPEC, build_segmenter, parse_model_spec
    from .prompts import parse_prompts
    from .reports import markdown_tables, write_reports

    base_text = "tiny-sam" if spec.base == DEFAULT_SPEC else spec.text.split("+")[0]
    trained = parse_model_spec(f"{base_text}+{'plugin' if args.tune == 'plugins' else 'decoder'}={weights}")
    specs = [parse_model_spec(base_text), trained]
    cache = EmbeddingCache(None if args.no_cache else (args.cache or default_cache_dir()))
    segs = [build_segmenter(s, cache, device, args.force) for s in specs]
    val_args = argparse.Namespace(**{**vars(args), "data": args.val, "split": args.val_split})
    config = EvalConfig(parse_prompts(args.val_prompts), args.val_samples, args.seed, args.val_limit)
    result = evaluate(open_datasets(val_args), segs, config)
    meta = {"samples": args.val_samples, "seed": args.seed, "command": "stablesam " + " ".join(args.argv),
            "versions": {"stablesam": __version__}}
    write_reports(result, [s.name for s in segs], Path(out) / "val", meta)
    print(markdown_tables(result, [s.name for s in segs]))


def cmd_segment(args: argparse.Namespace) -> int:
    from .segment import InputError, run_segment

    try:
        return run_segment(args)
    except InputError as e:
        raise UsageError(str(e).splitlines()[0]) from None


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .onnx_export import InputError, run_export_onnx

    try:
        return run_export_onnx(args)
    except InputError as e:
        raise UsageError(str(e).splitlines()[0]) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from .models import SpecError, build_sam_for

    limits = {k: v for k, v in (("max_bytes", args.max_bytes), ("max_pixels", args.max_pixels),
                                ("max_images", args.max_images)) if v is not None}
    if any(v < 1 for v in limits.values()):
        raise UsageError("--max-bytes, --max-pixels and --max-images must be positive")
    try:
        spec, model = build_sam_for("demo", args.model, args.device, args.force)
    except SpecError as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if not model.plugins_enabled:
        raise UsageError(f"{spec.text!r} has no plugin: the demo compares SAM with Stable-SAM; "
                         "give tiny-stable-sam or SPEC+plugin=PATH")
    from .demo import bind, create_app, server, url

    app = create_app(model, model_name=spec.text, **limits)
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    print(f"stablesam demo: {spec.text} on {model.device}, open {url(sock)} (Ctrl+C stops)", flush=True)
    with sock:
        server(app, log_level="warning").run(sockets=[sock])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stablesam",
        description="Stable-SAM: Segment Anything made stable under low-quality prompts.",
    )
    parser.add_argument("--version", action="version", version=f"stablesam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions, buildable models, where weights are looked up")
    info.set_defaults(func=cmd_info)

    from .images import MAX_PIXELS
    from .models import ACCEPTED, DEFAULT_SPEC, SAM_ACCEPTED
    from .prompts import DEFAULT_PROMPTS

    ev = sub.add_parser("eval", help="prompt-robustness benchmark: models x datasets x prompt types",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=ACCEPTED)
    add_data_options(ev)
    ev.add_argument("--model", action="append", metavar="SPEC",
                    help="a model SPEC (repeat to compare; default tiny-stable-sam)")
    ev.add_argument("--prompts", default=DEFAULT_PROMPTS, help=f"comma-separated prompt types (default {DEFAULT_PROMPTS})")
    ev.add_argument("--samples", type=int, default=20, metavar="K", help="prompts per object and type (default 20)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--limit", type=int, default=None, metavar="N", help="first N objects of each dataset")
    ev.add_argument("--out", default="stablesam-eval", metavar="DIR", help="output folder (default ./stablesam-eval)")
    ev.add_argument("--multimask", action="store_true", help="3 masks per prompt, keep the best predicted IoU")
    ev.add_argument("--explain", type=int, default=0, metavar="N",
                    help="record where the mask token looks (layer-2 token-to-image attention): the share inside "
                         "the object per prompt type in the tables, and explain.png for N objects")
    ev.add_argument("--protocol", default="prompts", metavar="LIST",
                    help="prompts (K random prompts per type, the default), clicks (the f-BRS/RITM simulated user: "
                         "NoC, NoF, mIoU per click) or prompts,clicks")
    ev.add_argument("--max-clicks", type=int, default=20, metavar="N", help="clicks protocol: clicks per object (default 20)")
    ev.add_argument("--iou-thresholds", default="0.85,0.9", metavar="LIST",
                    help="clicks protocol: IoU targets of NoC / NoF (default 0.85,0.9)")
    add_runtime_options(ev)
    ev.set_defaults(func=cmd_eval)

    tr = sub.add_parser("train", help="train the Stable-SAM plugins (or the decoder, DT baseline) with RTS",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="Scale out with torchrun: torchrun --nproc_per_node N -m stablesam train ...")
    add_data_options(tr)
    tr.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC",
                    help=f"the SAM to adapt (default {DEFAULT_SPEC}: plugins continue from the shipped ones; "
                         "--tune decoder always trains with the plugins off)")
    tr.add_argument("--out", required=True, metavar="DIR", help="weights, config, log, loss curve, checkpoint")
    tr.add_argument("--tune", choices=["plugins", "decoder"], default="plugins",
                    help="plugins: Stable-SAM's DSP + DRP only; decoder: the whole mask decoder (DT baseline)")
    length = tr.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None, help="passes over the objects (default 1)")
    length.add_argument("--steps", type=int, default=None, help="optimizer steps (instead of --epochs)")
    tr.add_argument("--batch-size", type=int, default=8, help="objects per step, over all processes (default 8)")
    tr.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    tr.add_argument("--snapshot-epochs", default=None, metavar="E1,E2,...",
                    help="also write the weights after these many epochs (OUT/plugin_epochsE.pt): with the "
                         "constant learning rate each equals a run of that length")
    tr.add_argument("--checkpoint-every", type=int, default=50, metavar="N", help="steps between checkpoints")
    tr.add_argument("--no-rts", action="store_true", help="ablation: ground-truth boxes only")
    tr.add_argument("--rts-mixture", default=None,
                    help="prompt mixture, e.g. gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15 (the default)")
    tr.add_argument("--no-drp", action="store_true", help="ablation: DSP without DRP (fixed α = 0.5, 0.5)")
    tr.add_argument("--offset-range", type=float, default=4.0, help="max |Δp| in embedding cells (default 4)")
    tr.add_argument("--sampled-pe", action="store_true", help="sample the PE at p + Δp too (default: grid PE)")
    tr.add_argument("--routing-token", choices=["mask", "iou", "mean"], default="mask",
                    help="output token driving the DRP (default: the single-mask token)")
    tr.add_argument("--routing-hidden", type=int, default=32, metavar="N", help="hidden width of the DRP's MLP (default 32)")
    tr.add_argument("--no-projection", action="store_true",
                    help="extension: no 1x1 conv before the offsets and the sampling (x* = x; 66k fewer parameters)")
    tr.add_argument("--amplitude", action="store_true",
                    help="extension: the DSP also predicts a per-cell amplitude of the sampled features")
    tr.add_argument("--offset-groups", type=int, default=1, metavar="G",
                    help="extension: G channel groups with their own offsets (8: one per attention head; default 1)")
    tr.add_argument("--extra-sites", default="", metavar="LIST",
                    help="extension: more attentions with their own DSP + DRP: layer1, final (default: layer 2 only)")
    tr.add_argument("--val", nargs="+", default=None, metavar="PATH", help="datasets for a short eval at the end")
    tr.add_argument("--val-split", default=None, metavar="FILE", help="split list for --val")
    tr.add_argument("--val-prompts", default="gt-box,noisy-box@0.4,points@1,points@3")
    tr.add_argument("--val-samples", type=int, default=5)
    tr.add_argument("--val-limit", type=int, default=None)
    add_runtime_options(tr)
    tr.set_defaults(func=cmd_train)

    sg = sub.add_parser("segment", help="segment one image from a box and/or clicks",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SAM_ACCEPTED)
    sg.add_argument("image", metavar="IMAGE", help="any image Pillow reads; EXIF orientation is applied")
    sg.add_argument("--box", metavar="x0,y0,x1,y1", help="box prompt in image pixels (after EXIF orientation)")
    sg.add_argument("--point", action="append", metavar="x,y[,label]",
                    help="click (label 1 foreground, default; 0 background); repeatable. Values may be "
                         "negative: --box -5,0,9,9 is read as --box=-5,0,9,9")
    sg.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC", help=f"default {DEFAULT_SPEC}")
    sg.add_argument("--out", metavar="MASK.png",
                    help="0/255 mask of the image's size, .png/.bmp/.tif (default IMAGE-stem_mask.png)")
    sg.add_argument("--overlay", metavar="OVERLAY.png",
                    help="also write the image with mask and prompt drawn (.png/.jpg/.webp/.bmp/.tif)")
    sg.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                    help=f"largest image in pixels, width x height (default {MAX_PIXELS / 1e6:.0f} MP)")
    sg.add_argument("--multimask", action="store_true", help="3 candidate masks, keep the best predicted IoU")
    sg.add_argument("--device", default=None)
    sg.add_argument("--force", action="store_true", help="load plugin/decoder files trained for another base")
    sg.add_argument("--everything", action="store_true",
                    help="automatic masks from a grid of clicks (no --box/--point): --out is then a folder of "
                         "one PNG per mask, overlay.png and masks.json (default IMAGE-stem_masks/)")
    sg.add_argument("--points-per-side", type=int, default=32, metavar="N", help="--everything: N x N grid (default 32)")
    sg.add_argument("--pred-iou-thresh", type=float, default=None, metavar="T",
                    help="--everything: keep masks with predicted IoU > T (default: SAM's 0.88; embedded model 0.3)")
    sg.add_argument("--stability-thresh", type=float, default=None, metavar="T",
                    help="--everything: keep masks with stability score >= T (default: SAM's 0.95; embedded model 0.5)")
    sg.add_argument("--min-area", type=int, default=0, metavar="PX",
                    help="--everything: remove holes and islands smaller than PX pixels (default 0: off)")
    sg.set_defaults(func=cmd_segment)

    ox = sub.add_parser("export-onnx", help="ONNX file of the prompt path (SAM's SamOnnxModel contract + alpha)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SAM_ACCEPTED)
    ox.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC", help=f"default {DEFAULT_SPEC}")
    ox.add_argument("--out", required=True, metavar="DECODER.onnx", help="the ONNX file to write")
    ox.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset, 12..20 (default 17)")
    ox.add_argument("--quantize", action="store_true", help="onnxruntime dynamic quantization (uint8 weights)")
    ox.add_argument("--plugins", choices=["on", "off"], default=None,
                    help="Stable-SAM (on) or plain SAM (off) from the same weights (default: on when the SPEC has a plugin)")
    ox.add_argument("--multimask", action="store_true",
                    help="output all 4 masks per prompt (default: 1, SAM's single-mask rule)")
    ox.add_argument("--verify", action="store_true",
                    help="run the file in onnxruntime on random prompts: max |Δ| vs PyTorch and time per prompt")
    ox.add_argument("--verify-prompts", type=int, default=20, metavar="K", help="prompts for --verify (default 20)")
    ox.add_argument("--force", action="store_true", help="load plugin/decoder files trained for another base")
    ox.set_defaults(func=cmd_export_onnx)

    dm = sub.add_parser("demo", help="interactive page: draw a box or click, see SAM and Stable-SAM side by side",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SAM_ACCEPTED)
    dm.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC",
                    help=f"a SAM with a plugin (default {DEFAULT_SPEC}); plain SAM is the same model with the plugins off")
    dm.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    dm.add_argument("--port", type=int, default=7860, help="default 7860")
    dm.add_argument("--max-bytes", type=int, default=None, metavar="N", help="largest upload in bytes (default 20 MB)")
    dm.add_argument("--max-pixels", type=int, default=None, metavar="N",
                    help="largest image in pixels, width x height (default 25 MP)")
    dm.add_argument("--max-images", type=int, default=None, metavar="N",
                    help="image embeddings kept in memory, least recently used dropped first (default 8)")
    dm.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    dm.add_argument("--force", action="store_true", help="load a plugin file trained for another base")
    dm.set_defaults(func=cmd_demo)
    return parser


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Warnings (a skipped bad file, ...) as one line each: 'PREFIX: warning: message', without
    the source line Python prints under a warning by default."""
    from .data import DataWarning

    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None) -> str:
        kind = "" if issubclass(category, DataWarning) else f" ({category.__name__})"
        return f"{prefix}: warning{kind}: {str(message).splitlines()[0] if str(message) else ''}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = original


def join_negative_values(argv: List[str]) -> List[str]:
    """`--box -5,0,9,9` -> `--box=-5,0,9,9`: argparse would take '-5,0,9,9' for an option."""
    out: List[str] = []
    for arg in argv:
        if out and out[-1] in ("--box", "--point") and arg.startswith("-") and not arg.startswith("--"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(join_negative_values(argv))
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with one_line_warnings(f"stablesam {args.command}"):
            return args.func(args)
    except UsageError as e:
        print(f"stablesam {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stablesam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
