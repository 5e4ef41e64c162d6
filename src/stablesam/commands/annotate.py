"""`stablesam annotate`: boxes to masks for a whole dataset (COCO instances, COCO detector
results or YOLO labels in; COCO instances with RLE masks out), resumable, on N local processes
or a Ray cluster. The work is in `stablesam.annotate`; this module parses and reports."""

import argparse
import math
from pathlib import Path

from .common import input_errors_as_usage

DEFAULT_MODEL = "tiny-stable-sam"  # models.spec.DEFAULT_SPEC (not imported here: fast start-up)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from ..annotate.runner import AnnotateOptions, run_annotate

    opts = AnnotateOptions(
        images=Path(args.images), boxes=Path(args.boxes), out=Path(args.out), model=args.model,
        min_score=args.min_score, image_info=Path(args.image_info) if args.image_info else None,
        workers=args.workers, engine=args.engine, ray_address=args.ray_address,
        masks_dir=Path(args.masks_dir) if args.masks_dir else None, strict=args.strict, device=args.device,
        force=args.force,
    )
    summary = run_annotate(opts)
    rate = summary.run_objects / summary.seconds if summary.seconds > 0 else 0.0
    skipped = sum(summary.skipped.values())
    print(f"wrote {opts.out}: {summary.images} images, {summary.objects} objects"
          + (f"; {skipped} skipped ({', '.join(f'{n} {r}' for r, n in summary.skipped.items())})" if skipped else ""))
    print(f"this run: {summary.run_images} images, {summary.run_objects} objects in {summary.seconds:.1f} s "
          f"({rate:.2f} objects/s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "annotate", help="boxes to masks for a whole dataset (COCO / YOLO in, COCO RLE out; resumable, parallel)",
        description="Turn every box of a dataset (COCO instances, a COCO results list with --image-info, or a "
                    "folder of YOLO .txt files; recognised from the content) into a mask. OUT.json is COCO "
                    "instances with one annotation per box (RLE segmentation, area, the mask's bbox, input_bbox, "
                    "predicted_iou, stability_score, routing_alpha). Finished images are kept in OUT.json.partial/; "
                    "rerun the same command to continue after an interruption. OUT.json appears when complete.")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of the images (COCO file_name is under it)")
    p.add_argument("--boxes", required=True, metavar="BOXES",
                   help="COCO instances JSON, COCO results list JSON (with --image-info) or a folder of YOLO .txt")
    p.add_argument("--out", required=True, metavar="OUT.json", help="COCO instances JSON with the masks")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="SPEC",
                   help=f"model SPEC as for `stablesam segment` (default {DEFAULT_MODEL})")
    p.add_argument("--min-score", type=finite_float, default=None, metavar="S",
                   help="keep only boxes with a detector score >= S (boxes without a score are kept)")
    p.add_argument("--image-info", metavar="COCO.json", default=None,
                   help="for a COCO results list: the instances file naming its image ids and categories")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="local processes (--engine local) or Ray actors (--engine ray), one model each (default 1)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local processes, or Ray Data on a Ray cluster (the [ray] extra) (default local)")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="--engine ray: an existing cluster (e.g. ray://host:10001 or auto; default: start a local one)")
    p.add_argument("--masks-dir", metavar="DIR", default=None,
                   help="also write one PNG of instance ids per image (k = the image's k-th annotation)")
    p.add_argument("--strict", action="store_true",
                   help="a bad box or image is an error (exit 2, nothing written) instead of a counted warning")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing OUT.json and write into a non-empty --masks-dir (other files there "
                        "are kept); an unfinished run of the same command needs no --force to continue")
    p.set_defaults(func=input_errors_as_usage(run))
