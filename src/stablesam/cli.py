"""The `stablesam` command line."""

import argparse
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

    from .models.embedded import BASE_FILE, PLUGIN_FILE, WEIGHTS_DIR, embedded_available
    from .modeling import PluginConfig
    from .modeling.stable_sam import build_plugin_pair
    from .models.spec import ACCEPTED

    sam_version = package_version("segment-anything")
    config = PluginConfig()
    dsp, drp = build_plugin_pair(config)
    n_dsp = sum(p.numel() for p in dsp.parameters())
    n_drp = sum(p.numel() for p in drp.parameters())
    cuda = torch.cuda.is_available()
    print(f"stablesam {__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, segment-anything {sam_version}")
    print(f"device: {'cuda (' + torch.cuda.get_device_name(0) + ')' if cuda else 'cpu'}")
    from .backends.registry import families, installed

    def family_state(backend) -> str:
        return "installed" if installed(backend.family) else f"not installed (pip install \"stablesam[{backend.extra}]\")"

    print("SAM families: " + "; ".join(f"{b.title} {family_state(b)}" for b in families()))
    print(f"plugin parameters (256-d decoder): {n_dsp + n_drp:,} "
          f"({(n_dsp + n_drp) / 1e6:.3f} M; DSP {n_dsp:,}, DRP {n_drp:,})")
    print(f"default plugin config: {config.to_dict()}")
    print("model SPECs (segment and demo take the SAM ones, not grabcut):")
    print("\n".join(ACCEPTED.splitlines()[1:]))
    if embedded_available():
        from .backends.official import read_weights

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


def open_cache(args: argparse.Namespace):
    """The embedding cache of --cache / --no-cache: a path that cannot be a folder is a
    UsageError; one that cannot be written is read only (with a warning)."""
    from .models.cache import CacheError, EmbeddingCache, default_cache_dir

    if args.no_cache:
        return EmbeddingCache(None)
    root = args.cache or default_cache_dir()
    try:
        return EmbeddingCache.checked(root)
    except CacheError as e:
        raise UsageError(f"--cache {root}: {e}") from None


def check_out_folder(out: str) -> None:
    """--out of eval and train: a folder that exists or can be made, where files can be created."""
    from pathlib import Path

    from .fileio import folder_problem

    problem = folder_problem(Path(out))
    if problem:
        raise UsageError(f"--out {out}: {problem}")


def open_datasets(args: argparse.Namespace) -> list:
    from .data.datasets import DataError, load_split
    from .data.layouts import parse_spec

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
    from .commands.eval import run_eval

    return run_eval(args)


def cmd_train(args: argparse.Namespace) -> int:
    from .commands.train import run_train

    return run_train(args)


def cmd_segment(args: argparse.Namespace) -> int:
    from .commands.segment import InputError, run_segment

    try:
        return run_segment(args)
    except InputError as e:
        raise UsageError(str(e).splitlines()[0]) from None


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .export.onnx_export import InputError
    from .commands.export_onnx import run_export_onnx

    try:
        return run_export_onnx(args)
    except InputError as e:
        raise UsageError(str(e).splitlines()[0]) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from .models.spec import SpecError, build_sam_for

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


def cmd_label_studio(args: argparse.Namespace) -> int:
    from .label_studio.command import InputError, run_label_studio

    try:
        return run_label_studio(args)
    except InputError as e:
        raise UsageError(str(e).splitlines()[0]) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stablesam",
        description="Stable-SAM: Segment Anything made stable under low-quality prompts.",
    )
    parser.add_argument("--version", action="version", version=f"stablesam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions, buildable models, where weights are looked up")
    info.set_defaults(func=cmd_info)

    from .data.images import MAX_PIXELS
    from .models.spec import ACCEPTED, DEFAULT_SPEC, SAM_ACCEPTED
    from .prompts.generation import DEFAULT_PROMPTS

    ev = sub.add_parser("eval", help="prompt-robustness benchmark: models x datasets x prompt types",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=ACCEPTED)
    add_data_options(ev)
    ev.add_argument("--model", action="append", metavar="SPEC",
                    help="a model SPEC (repeat to compare; default tiny-stable-sam)")
    ev.add_argument("--prompts", default=DEFAULT_PROMPTS, help=f"comma-separated prompt types (default {DEFAULT_PROMPTS})")
    ev.add_argument("--samples", type=int, default=20, metavar="K", help="prompts per object and type (default 20)")
    ev.add_argument("--adv-budget", type=int, default=48, metavar="N",
                    help="adv-box@R, best-box@R, adv-point: decoder passes per object for each model's search (default 48)")
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
    tr.add_argument("--tune", choices=["plugins", "decoder", "prompt+decoder"], default="plugins",
                    help="plugins: Stable-SAM's DSP + DRP only; decoder: the whole mask decoder (DT baseline); "
                         "prompt+decoder: the prompt encoder too (with interactive=W in --rts-mixture: SAM's "
                         "interactive training, mask_input included)")
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
                    help="prompt mixture (default gt-box=0.1,noisy-box=0.6,points=0.2,box+points=0.1,part-clicks=0.5; "
                         "release 0.1: gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15,part-clicks=0; "
                         "interactive=W adds SAM's corrective-click sessions, interactive-clicks=8, deepest-clicks=0.5)")
    tr.add_argument("--no-drp", action="store_true", help="ablation: DSP without DRP (fixed α = 0.5, 0.5)")
    tr.add_argument("--offset-range", type=float, default=None, help="max |Δp| in embedding cells (default 4)")
    tr.add_argument("--sampled-pe", action="store_true", help="sample the PE at p + Δp too (default: grid PE)")
    tr.add_argument("--routing-token", choices=["mask", "iou", "mean"], default=None,
                    help="output token driving the DRP (default: the single-mask token)")
    tr.add_argument("--routing-hidden", type=int, default=None, metavar="N", help="hidden width of the DRP's MLP (default 32)")
    tr.add_argument("--no-projection", action="store_true",
                    help="extension: no 1x1 conv before the offsets and the sampling (x* = x; 66k fewer parameters)")
    tr.add_argument("--projection-rank", type=int, default=None, metavar="R",
                    help="the 1x1 projection as identity + rank R (default 32; 0: a full matrix, the paper)")
    tr.add_argument("--offset-width", type=int, default=None, metavar="R",
                    help="the offset net works on R channels (a 1x1 conv to R first; default 32; 0: all, the paper)")
    tr.add_argument("--amplitude", action="store_true",
                    help="extension: the DSP also predicts a per-cell amplitude of the sampled features")
    tr.add_argument("--offset-groups", type=int, default=None, metavar="G",
                    help="extension: G channel groups with their own offsets (8: one per attention head; default 1)")
    tr.add_argument("--extra-sites", default="", metavar="LIST",
                    help="extension: more attentions with their own DSP + DRP: layer1, final (default: layer 2 only)")
    tr.add_argument("--routing-inputs", default="", metavar="LIST",
                    help="the DRP also reads: prompt (the prompt's own tokens, pooled), iou (the IoU token); "
                         "default: the routing token only")
    tr.add_argument("--routing-temperature", type=float, default=None, metavar="T",
                    help="α = softmax(z / T) (default 1)")
    tr.add_argument("--consistency", type=float, default=0.0, metavar="W",
                    help="for gt-box and near-gt box prompts, match the frozen base's logits (self-distillation; "
                         "default 0: off)")
    tr.add_argument("--alpha-prior", type=float, default=0.0, metavar="W",
                    help="for gt-box and near-gt box prompts, push α(deformed) to 0 (default 0: off)")
    tr.add_argument("--offset-reg", type=float, default=0.0, metavar="W",
                    help="penalise the mean squared offset, in units of --offset-range (default 0: off)")
    tr.add_argument("--near-gt", type=float, default=0.1, metavar="S",
                    help="box prompts with noise scale <= S count as near-gt for --consistency and --alpha-prior "
                         "(default 0.1)")
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
                    help="--everything: keep masks with predicted IoU > T (default: the model's: embedded 0.3, "
                         "SAM 0.88, SAM 2 0.8)")
    sg.add_argument("--stability-thresh", type=float, default=None, metavar="T",
                    help="--everything: keep masks with stability score >= T (default: the model's: embedded 0.5, "
                         "SAM and SAM 2 0.95)")
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

    from .label_studio.command import add_arguments as add_label_studio_arguments

    ls = sub.add_parser("label-studio", help="Label Studio ML backend: masks from boxes and clicks, interactive",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SAM_ACCEPTED)
    add_label_studio_arguments(ls)
    ls.set_defaults(func=cmd_label_studio)
    return parser


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Warnings (a skipped bad file, ...) as one line each: 'PREFIX: warning: message', without
    the source line Python prints under a warning by default."""
    from .data.datasets import DataWarning

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
