"""`stablesam segment`: one image, a box and/or clicks, a mask (and an overlay).

Every check (outputs, image, prompt, model SPEC) runs before the model does; a bad input is an
`InputError` (the CLI prints its first line and exits with 2) and no file is written. The mask
and the overlay are written together: both or neither. An output file that exists is replaced
only with --force. Without --out the mask goes to IMAGE-stem_mask.png in the current folder.
"""

import argparse
from dataclasses import dataclass
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..data.images import MAX_PIXELS, InputError, load_image
from ..fileio import (
    MASK_FORMATS, OVERLAY_FORMATS, OutputError, check_new_file, check_writable, image_writer, write_together,
)
from ..prompts.checks import box_problem, point_inside
from .common import config_option, input_errors_as_usage


def parse_numbers(text: str, n: Tuple[int, ...], what: str) -> List[float]:
    """'a,b,...' -> n finite numbers, or InputError (NaN, inf and 1e999 are not coordinates)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in n:
        raise InputError(f"bad {what} {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"bad {what} {text!r}: every value must be a finite number")
    return values


def parse_box(text: str, size: Tuple[int, int]) -> np.ndarray:
    """'x0,y0,x1,y1' in pixels of an image of size (H, W) -> (4,)."""
    box = parse_numbers(text, (4,), "--box (expected x0,y0,x1,y1)")
    problem = box_problem(box, size)
    if problem:
        raise InputError(f"--box {text}: {problem}")
    return np.array(box)


def parse_point(text: str, size: Tuple[int, int]) -> Tuple[List[float], int]:
    """'x,y[,label]' (label 1 = foreground, 0 = background) -> ([x, y], label)."""
    values = parse_numbers(text, (2, 3), "--point (expected x,y or x,y,label)")
    if len(values) == 3 and values[2] not in (0, 1):
        raise InputError(f"--point {text}: label must be 1 (foreground) or 0 (background)")
    label = int(values[2]) if len(values) == 3 else 1
    h, w = size
    x, y = values[:2]
    if not point_inside(x, y, size):
        raise InputError(f"--point {text}: outside the {w}x{h} image")
    return [x, y], label


def overlay(image: np.ndarray, mask: np.ndarray, box: Optional[np.ndarray], points, labels) -> np.ndarray:
    """The image with the mask tinted and the prompt drawn."""
    import cv2

    out = image.copy()
    tint = np.array([30, 144, 255], np.uint8)
    out[mask] = (0.45 * out[mask] + 0.55 * tint).astype(np.uint8)
    edges = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = tint
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 230, 0), 2)
    for (x, y), label in zip(points, labels):
        cv2.circle(out, (int(round(x)), int(round(y))), 5, (0, 230, 0) if label else (230, 0, 0), -1)
        cv2.circle(out, (int(round(x)), int(round(y))), 5, (255, 255, 255), 1)
    return out


def check_output(path: Path, formats: Dict[str, str], option: str, inputs: List[Path], force: bool = False) -> None:
    """Refuse an output path before any work: an extension without a fitting format, a folder,
    a path that is one of `inputs` (by name or, through links, by inode), a file that exists
    (unless `force`), or one that cannot be written."""
    if path.suffix.lower() not in formats:
        raise InputError(f"{option} {path}: the extension must be one of {', '.join(formats)} "
                         f"(the file is written in the format it names)")
    from ..limits import name_problem

    problem = name_problem(path)  # before any look at the path: os.stat refuses such names too
    if problem:
        raise InputError(f"{option} {str(path)[:80]}: {problem}")
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name")
    for other in inputs:
        same = os.path.abspath(path) == os.path.abspath(other)
        if not same and path.exists() and other.exists():
            same = os.path.samefile(path, other)
        if same:
            raise InputError(f"{option} {path} is the same file as {other}; it would be overwritten")
    check_writable(path, option)
    check_new_file(path, option, force)


def run_segment(args: argparse.Namespace) -> int:
    """`stablesam segment` with its parsed arguments: print the scores, write the mask (and overlay)."""
    from ..models.spec import SpecError, build_sam_for
    from ..backends.predictor import StableSamPredictor

    if getattr(args, "everything", False):
        from .everything import run_everything

        return run_everything(args)
    image_path = Path(args.image)
    out = Path(args.out or f"{image_path.stem}_mask.png")
    if args.max_pixels < 1:
        raise InputError("--max-pixels must be positive")
    check_output(out, MASK_FORMATS, "--out", [image_path], args.force)
    if args.overlay:
        check_output(Path(args.overlay), OVERLAY_FORMATS, "--overlay", [image_path, out], args.force)
    if len(args.point or []) > 1:
        from ..limits import POINTS

        POINTS.check(len(args.point), "the number of --point options")
    image = load_image(image_path, max_pixels=args.max_pixels)
    box = parse_box(args.box, image.shape[:2]) if args.box else None
    clicks = [parse_point(p, image.shape[:2]) for p in args.point or []]
    if box is None and not clicks:
        raise InputError("no prompt: give --box x0,y0,x1,y1 and/or --point x,y[,label]")
    try:
        spec, model = build_sam_for("segment", args.model, args.device, args.force_plugin)
    except SpecError as e:
        raise InputError(str(e)) from None
    points = np.array([c for c, _ in clicks], float) if clicks else None
    labels = np.array([lab for _, lab in clicks]) if clicks else None
    predictor = StableSamPredictor(model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(point_coords=points, point_labels=labels, box=box,
                                         multimask_output=args.multimask)
    best = int(np.argmax(scores))
    mask = masks[best]
    files = {out: image_writer(out, mask.astype(np.uint8) * 255)}
    if args.overlay:
        files[Path(args.overlay)] = image_writer(Path(args.overlay), overlay(
            image, mask, box, [] if points is None else points, [] if labels is None else labels))
    try:
        write_together(files)
    except OSError as e:
        raise OutputError(f"cannot write {e.filename or out}: {e.strerror or e}; no file was written") from None
    print(f"model: {spec.name}")
    extra = f" (best of 3: {', '.join(f'{s:.3f}' for s in scores)})" if args.multimask else ""
    print(f"predicted IoU: {scores[best]:.3f}{extra}")
    alpha = predictor.routing["alpha"]
    if alpha is None:
        print("routing weights: none (plugins off)")
    else:
        shift = np.abs(predictor.routing["offsets"][0]).mean()
        print(f"routing weights: alpha = {alpha[0, 0]:.3f} (deformed), {alpha[0, 1]:.3f} (regular); "
              f"mean |offset| {shift:.2f} embedding cells")
    if model.plugins_enabled and model.last_selected is not None and not model.last_selected[0]:
        print("the plugins stood aside: this is SAM's own mask")
    if model.plugins_enabled and model.last_refined is not None and model.last_refined[0]:
        print("refined: decoded again with the widened box of its first mask")
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]})" + (f" and {args.overlay}" if args.overlay else ""))
    return 0


# SamAutomaticMaskGenerator's default thresholds (segment_anything 1.0; tests/test_keep_files.py
# checks them), written here so that `segment --help` need not import segment_anything.
SAM_GENERATOR_DEFAULTS = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}


@dataclass
class EverythingConfig:
    """`segment --everything`: the click grid per device and the clean-up (the thresholds are
    the model's)."""

    gpu_points_per_side: int = 32  # SamAutomaticMaskGenerator's grid
    # 10 x 10 clicks: the embedded model's automatic masks on a 600 x 400 photo in seconds on 2 CPU
    # cores (docs/results/automatic_masks/README.md measures time and recall per grid)
    cpu_points_per_side: int = 10
    min_area: int = 0  # remove holes and islands smaller than this (0: off)

    def points_per_side(self, device_type: str) -> int:
        """The default grid on a device of this type ('cuda', 'cpu', ...)."""
        return self.gpu_points_per_side if device_type == "cuda" else self.cpu_points_per_side


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.embedded import AUTOMATIC_DEFAULTS
    from ..models.spec import DEFAULT_SPEC, SAM_ACCEPTED

    sam = SAM_GENERATOR_DEFAULTS
    grid = EverythingConfig()
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
    sg.add_argument("--force", action="store_true",
                    help="replace outputs that exist (only the files this command writes; each atomically)")
    sg.add_argument("--force-plugin", action="store_true", help="load plugin/decoder files trained for another base")
    sg.add_argument("--everything", action="store_true",
                    help="automatic masks from a grid of clicks (no --box/--point): --out is then a folder of "
                         "one PNG per mask, overlay.png and masks.json (default IMAGE-stem_masks/ in the "
                         "current folder); a folder that exists must be empty, or --force")
    sg.add_argument("--points-per-side", type=int, default=None, metavar="N",
                    help=f"--everything: N x N grid of clicks (default: the device's, {grid.gpu_points_per_side} on "
                         f"a GPU, {grid.cpu_points_per_side} on a CPU; the choice is printed)")
    sg.add_argument("--pred-iou-thresh", type=float, default=None, metavar="T",
                    help=f"--everything: keep masks with predicted IoU > T (default: the model's: embedded "
                         f"{AUTOMATIC_DEFAULTS['pred_iou_thresh']:g}, SAM {sam['pred_iou_thresh']:g}, SAM 2 0.8)")
    sg.add_argument("--stability-thresh", type=float, default=None, metavar="T",
                    help=f"--everything: keep masks with stability score >= T (default: the model's: embedded "
                         f"{AUTOMATIC_DEFAULTS['stability_score_thresh']:g}, SAM and SAM 2 "
                         f"{sam['stability_score_thresh']:g})")
    config_option(sg, "--min-area", EverythingConfig, "min_area",
                  "--everything: remove holes and islands smaller than PX pixels (default {default}: off)", type=int,
                  metavar="PX")
    sg.set_defaults(func=input_errors_as_usage(run_segment), everything_config=grid)
