"""`stablesam segment IMAGE --everything`: automatic masks into a folder.

The folder gets one 0/255 PNG per mask (`mask_000.png`, ... largest first), `overlay.png` (the
image with every mask in its own colour) and `masks.json` (settings and, per mask, its file,
area, bbox, predicted IoU, stability score, prompt point and crop box). It is written as a new
folder beside `--out` and renamed into place, replacing a folder an earlier run wrote; nothing
is half-written. Every check runs before the model does; bad input is an `InputError`.
"""

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np

from ..data.images import InputError, load_image
from ..fileio import OutputError, folder_problem
from ..fileio import write_image
from ..fileio import write_text

SUMMARY = "masks.json"
OVERLAY = "overlay.png"
MAX_POINTS_PER_SIDE = 128


def check_options(args: argparse.Namespace) -> None:
    given = [opt for opt, v in (("--box", args.box), ("--point", args.point), ("--overlay", args.overlay),
                                ("--multimask", args.multimask)) if v]
    if given:
        raise InputError(f"--everything takes no {', '.join(given)} (it prompts a grid of single clicks)")
    if not 1 <= args.points_per_side <= MAX_POINTS_PER_SIDE:
        raise InputError(f"--points-per-side must be 1..{MAX_POINTS_PER_SIDE}, got {args.points_per_side}")
    for opt, v in (("--pred-iou-thresh", args.pred_iou_thresh), ("--stability-thresh", args.stability_thresh)):
        if v is not None and not (math.isfinite(v) and 0 <= v <= 1):
            raise InputError(f"{opt} must be a number in 0..1, got {v}")
    if args.min_area < 0:
        raise InputError(f"--min-area must be >= 0, got {args.min_area}")
    if args.max_pixels < 1:
        raise InputError("--max-pixels must be positive")


def check_folder(out: Path, image_path: Path) -> None:
    """--out must be a new folder, an empty one, or one an earlier --everything wrote."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY).is_file():
        raise InputError(f"--out {out} holds other files; give a new or empty folder (or one --everything wrote)")
    if out.is_dir() and image_path.resolve().parent == out.resolve():
        raise InputError(f"--out {out} holds the image {image_path.name}; it would be replaced")
    problem = folder_problem(out.parent)  # the new folder is made beside it, then renamed
    if problem:
        raise OutputError(f"--out {out}: {problem}")


def colour_overlay(image: np.ndarray, masks: List[np.ndarray], seed: int = 0) -> np.ndarray:
    """The image with mask i tinted in colour i (seeded), largest first so small ones stay on top."""
    out = image.astype(np.float32)
    colours = np.random.default_rng(seed).integers(40, 256, (len(masks), 3))
    kernel = np.ones((3, 3), np.uint8)
    for mask, colour in zip(masks, colours):
        out[mask] = 0.45 * out[mask] + 0.55 * colour
        edges = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, kernel) > 0
        out[edges] = colour
    return out.round().clip(0, 255).astype(np.uint8)


def replace_folder(out: Path, files: Dict[str, Any]) -> None:
    """Write `files` ({name: (H, W[, 3]) uint8 image or JSON text}) into a temporary folder beside
    `out`, then rename it to `out` (an old `out` is moved aside first and deleted after)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        for name, content in files.items():
            (write_text if isinstance(content, str) else write_image)(tmp / name, content)
        from ..fileio import current_umask

        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old / out.name, out)  # put the earlier result back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def run_everything(args: argparse.Namespace) -> int:
    """`stablesam segment IMAGE --everything` with its parsed arguments."""
    import torch

    from ..models.spec import SpecError, build_sam_for
    from ..backends.predictor import CPU_MAX_BATCH

    check_options(args)
    image_path = Path(args.image)
    out = Path(args.out or f"{image_path.stem}_masks")
    check_folder(out, image_path)
    image = load_image(image_path, max_pixels=args.max_pixels)
    try:
        spec, model = build_sam_for("segment --everything", args.model, args.device, args.force)
        generator = model.backend.automatic_generator()  # TypeError for a family without one
    except (SpecError, TypeError) as e:
        raise InputError(str(e)) from None
    model.eval()
    # Thresholds not given are the model's own, exactly as for StableSamAutomaticMaskGenerator(model)
    # in Python (the embedded model's calibrated ones, else the family generator's); what was
    # used is read back from the generator.
    given = {"points_per_side": args.points_per_side,
             "points_per_batch": 64 if model.device.type == "cuda" else CPU_MAX_BATCH,
             "pred_iou_thresh": args.pred_iou_thresh, "stability_score_thresh": args.stability_thresh,
             "min_mask_region_area": args.min_area}
    gen = generator(model, **{k: v for k, v in given.items() if v is not None})
    settings = {k: getattr(gen, k, given[k]) for k in given}  # (points_per_side is not kept)
    with torch.no_grad():
        records = gen.generate(image)
    records.sort(key=lambda r: -r["area"])
    files: Dict[str, Any] = {}
    summary = []
    for i, record in enumerate(records):
        name = f"mask_{i:03d}.png"
        files[name] = record["segmentation"].astype(np.uint8) * 255
        summary.append({"file": name, **{k: v for k, v in record.items() if k != "segmentation"}})
    files[OVERLAY] = colour_overlay(image, [r["segmentation"] for r in records])
    files[SUMMARY] = json.dumps({
        "image": str(image_path), "width": image.shape[1], "height": image.shape[0], "model": spec.text,
        "plugins": model.plugins_enabled, "settings": settings, "count": len(records), "masks": summary,
    }, indent=2)
    try:
        replace_folder(out, files)
    except OSError as e:
        raise OutputError(f"cannot write {e.filename or out}: {e.strerror or e}; {out} is unchanged") from None
    print(f"model: {spec.text} (plugins {'on' if model.plugins_enabled else 'off'})")
    print(f"{len(records)} masks from a {args.points_per_side}x{args.points_per_side} grid (predicted IoU > "
          f"{settings['pred_iou_thresh']}, stability >= {settings['stability_score_thresh']})"
          + ("; none passed: try lower --pred-iou-thresh / --stability-thresh" if not records else ""))
    print(f"wrote {out}/ ({len(records)} mask PNGs, {OVERLAY}, {SUMMARY})")
    return 0
