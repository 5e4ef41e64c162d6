"""`stablesam segment IMAGE --everything`: automatic masks into a folder.

The folder gets one 0/255 PNG per mask (`mask_000.png`, ... largest first), `overlay.png` (the
image with every mask in its own colour) and `masks.json` (settings and, per mask, its file,
area, bbox, predicted IoU, stability score, prompt point and crop box). A new folder is written
beside `--out` and renamed into place (all or nothing). A folder that exists must be empty, or
given with --force: its files are then kept, except the ones this command writes, each replaced
atomically, and the mask PNGs that the folder's earlier `masks.json` lists and this run no longer
writes. Every check runs before the model does; bad input is an `InputError`. The grid of clicks
defaults to the device's (`segment.EverythingConfig`, handed over as `args.everything_config`), and a progress bar shows the decoder passes.
"""

import argparse
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..data.images import InputError, load_image
from ..fileio import OutputError, check_output_folder, folder_problem, image_writer, write_together

SUMMARY = "masks.json"
OVERLAY = "overlay.png"
MASK_NAME = re.compile(r"mask_\d{3,}\.png")  # mask_000.png, ...
MAX_POINTS_PER_SIDE = 128


def check_options(args: argparse.Namespace) -> None:
    given = [opt for opt, v in (("--box", args.box), ("--point", args.point), ("--overlay", args.overlay),
                                ("--multimask", args.multimask)) if v]
    if given:
        raise InputError(f"--everything takes no {', '.join(given)} (it prompts a grid of single clicks)")
    if args.points_per_side is not None and not 1 <= args.points_per_side <= MAX_POINTS_PER_SIDE:
        raise InputError(f"--points-per-side must be 1..{MAX_POINTS_PER_SIDE}, got {args.points_per_side}")
    for opt, v in (("--pred-iou-thresh", args.pred_iou_thresh), ("--stability-thresh", args.stability_thresh)):
        if v is not None and not (math.isfinite(v) and 0 <= v <= 1):
            raise InputError(f"{opt} must be a number in 0..1, got {v}")
    if args.min_area < 0:
        raise InputError(f"--min-area must be >= 0, got {args.min_area}")
    if args.max_pixels < 1:
        raise InputError("--max-pixels must be positive")


def ours(name: str) -> bool:
    """Whether a file name is one that --everything writes."""
    return name in (SUMMARY, OVERLAY) or MASK_NAME.fullmatch(name) is not None


def check_folder(out: Path, image_path: Path, force: bool) -> None:
    """--out must be a new folder, an empty one, or (with `force`) any folder; the image must not
    be one of the files written into it."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    check_output_folder(out, "--out", force)
    if out.is_dir() and image_path.resolve().parent == out.resolve() and ours(image_path.name):
        raise InputError(f"--out {out} holds the image {image_path.name}; it would be replaced")
    problem = folder_problem(out.parent)  # a new folder is made beside it, then renamed
    if problem:
        raise OutputError(f"--out {out}: {problem}")


def colour_overlay(image: np.ndarray, masks: List[np.ndarray], seed: int = 0) -> np.ndarray:
    """The image with mask i tinted in colour i (seeded), largest first so small ones stay on top."""
    import cv2

    out = image.astype(np.float32)
    colours = np.random.default_rng(seed).integers(40, 256, (len(masks), 3))
    kernel = np.ones((3, 3), np.uint8)
    for mask, colour in zip(masks, colours):
        out[mask] = 0.45 * out[mask] + 0.55 * colour
        edges = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, kernel) > 0
        out[edges] = colour
    return out.round().clip(0, 255).astype(np.uint8)


def writers(folder: Path, files: Dict[str, Any]) -> Dict[Path, Callable]:
    """{path in folder: write(f)} for `files` ({name: (H, W[, 3]) uint8 image or JSON text})."""
    return {folder / name: (lambda f, text=content: f.write(text.encode())) if isinstance(content, str)
            else image_writer(folder / name, content) for name, content in files.items()}


def earlier_masks(out: Path) -> List[str]:
    """The mask PNGs that `out`'s masks.json (from an earlier run) lists; [] if none is readable."""
    try:
        listed = json.loads((out / SUMMARY).read_text())["masks"]
        return [m["file"] for m in listed if isinstance(m.get("file"), str) and MASK_NAME.fullmatch(m["file"])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def write_folder(out: Path, files: Dict[str, Any]) -> None:
    """A new `out`: written as a temporary folder beside it, renamed into place (all or nothing).
    An existing `out`: each of `files` replaced atomically (all or none), other files kept, and
    the mask PNGs of an earlier run that this one does not write removed."""
    if out.is_dir():
        stale = [name for name in earlier_masks(out) if name not in files]
        write_together(writers(out, files))
        for name in stale:
            (out / name).unlink(missing_ok=True)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_together(writers(tmp, files))
        from ..fileio import current_umask

        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        os.rename(tmp, out)  # (a folder made meanwhile at `out` makes this fail: it is not replaced)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def total_points(gen: Any, size) -> Optional[int]:
    """The clicks `gen.generate` will decode on an image of `size` (H, W): its grid over its crops."""
    try:
        from segment_anything.utils.amg import generate_crop_boxes

        _, layers = generate_crop_boxes(tuple(size), gen.crop_n_layers, gen.crop_overlap_ratio)
        return int(sum(len(gen.point_grids[layer]) for layer in layers))
    except (AttributeError, IndexError, TypeError):
        return None


def with_progress(gen: Any, total: Optional[int]):
    """A tqdm bar (clicks decoded, with ETA) that `gen`'s decoder batches advance; returns it."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="click", desc="automatic masks", dynamic_ncols=True, leave=True)
    process = gen._process_batch  # what every family's generator runs per batch of clicks

    def counted(points, *args: Any, **kwargs: Any):
        result = process(points, *args, **kwargs)
        bar.update(len(points))
        return result

    gen._process_batch = counted
    return bar


def run_everything(args: argparse.Namespace) -> int:
    """`stablesam segment IMAGE --everything` with its parsed arguments."""
    import torch

    from ..backends.predictor import CPU_MAX_BATCH
    from ..models.spec import SpecError, build_sam_for
    check_options(args)
    image_path = Path(args.image)
    out = Path(args.out or f"{image_path.stem}_masks")
    check_folder(out, image_path, args.force)
    image = load_image(image_path, max_pixels=args.max_pixels)
    try:
        spec, model = build_sam_for("segment --everything", args.model, args.device, args.force_plugin)
        generator = model.backend.automatic_generator()  # TypeError for a family without one
    except (SpecError, TypeError) as e:
        raise InputError(str(e)) from None
    model.eval()
    # Thresholds not given are the model's own, exactly as for StableSamAutomaticMaskGenerator(model)
    # in Python (the embedded model's calibrated ones, else the family generator's); what was
    # used is read back from the generator.
    grid = args.points_per_side or args.everything_config.points_per_side(model.device.type)
    given = {"points_per_side": grid,
             "points_per_batch": 64 if model.device.type == "cuda" else CPU_MAX_BATCH,
             "pred_iou_thresh": args.pred_iou_thresh, "stability_score_thresh": args.stability_thresh,
             "min_mask_region_area": args.min_area}
    gen = generator(model, **{k: v for k, v in given.items() if v is not None})
    settings = {k: getattr(gen, k, given[k]) for k in given}  # (points_per_side is not kept)
    chosen = "given" if args.points_per_side else f"the {model.device.type.upper()} default; --points-per-side N to change"
    print(f"grid: {grid}x{grid} clicks ({chosen})", flush=True)
    bar = with_progress(gen, total_points(gen, image.shape[:2]))
    try:
        with torch.no_grad():
            records = gen.generate(image)
    finally:
        bar.close()
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
        write_folder(out, files)
    except OSError as e:
        raise OutputError(f"cannot write {e.filename or out}: {e.strerror or e}; {out} is unchanged") from None
    print(f"model: {spec.text} (plugins {'on' if model.plugins_enabled else 'off'})")
    print(f"{len(records)} masks from a {grid}x{grid} grid (predicted IoU > "
          f"{settings['pred_iou_thresh']}, stability >= {settings['stability_score_thresh']})"
          + ("; none passed: try lower --pred-iou-thresh / --stability-thresh" if not records else ""))
    print(f"wrote {out}/ ({len(records)} mask PNGs, {OVERLAY}, {SUMMARY})")
    return 0
