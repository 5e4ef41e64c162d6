#!/usr/bin/env python
"""Train the embedded tiny SAM from scratch on real images, the way SAM itself was trained.

Model: `stablesam.modeling.small_sam.TINY_SAM_ARCH` (compact conv image encoder + SAM's
standard prompt encoder and 256-d two-way mask decoder; 512 px input, 32 x 32 embedding).

Recipe (SAM paper, section 3 and appendix A, scaled down):
- prompts per object: the ground-truth box with SAM's jitter (N(0, 10 % of the side), at most
  20 px per coordinate), one foreground click (multimask output, loss of the best of the three
  masks: "we only backpropagate the minimum loss over masks"), or 2..5 foreground clicks
  (single output, as SAM does for several prompts);
- loss: BCE + Dice on the mask logits (upsampled 2x to 256 x 256, against the area-downsampled
  mask) plus the MSE between the IoU head and the IoU of each predicted mask;
- augmentation: horizontal flip, random zoom-in crop, colour jitter, and copy-paste composites
  (an object cut out by its mask and pasted onto another training image; the pasted object is
  the target, and the objects it covers become occluded targets);
- AdamW, linear warmup + cosine decay over --total-steps.

Every step's data and prompts are a pure function of (--seed, step) (`stablesam.prompts.object_rng`),
so a run resumed from its checkpoint (--resume) sees exactly what an uninterrupted run sees.
Only the exported weights may survive between sessions: `--init FILE` continues from an exported
SAM file (its meta records the step) with a fresh optimizer and a short LR re-warmup.

    python scripts/train_tiny_sam.py --write-split          # (re)write splits/train.txt, val.txt
    python scripts/train_tiny_sam.py --out runs/tiny_sam --minutes 118 --total-steps 3600 \\
        --resume --export runs/tiny_sam/tiny_sam.pt --eval-val 100
    # a later session where only the exported weights survived:
    python scripts/train_tiny_sam.py --out runs/tiny_sam2 --minutes 60 --total-steps 3600 \\
        --init runs/tiny_sam/tiny_sam.pt --export runs/tiny_sam/tiny_sam.pt --eval-val 100
    python scripts/train_tiny_sam.py --eval-only --init runs/tiny_sam/tiny_sam.pt --eval-val 200

On a shared 2-core machine keep --threads 1: with another busy process, 2 OpenMP threads spend
most of their time waiting for each other (measured 10-20x slower steps).
"""

import argparse
import concurrent.futures
import copy
import csv
import hashlib
import io
import json
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from stablesam.checkpoints import atomic_torch_save, load_sam_file, read_weights, save_sam_file  # noqa: E402
from stablesam.data import FolderDataset, load_split, read_image, read_mask  # noqa: E402
from stablesam.modeling.small_sam import TINY_SAM_ARCH, build_small_sam  # noqa: E402
from stablesam.prompts import fix_boxes, mask_to_box, object_rng, sam_jitter_boxes, sample_points  # noqa: E402
from stablesam.reports import write_text  # noqa: E402
from stablesam.training import dice_loss  # noqa: E402

DATASETS = ("davis345", "coco_mval", "weizmann_horse")
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
DEFAULT_SPLIT_DIR = REPO / "splits"
CHECKPOINT_FORMAT = "stablesam-tiny-sam-train"
# DAVIS frames come in runs of ~5-8 frames per video. Validation = three runs of whole videos,
# inclusive frame numbers, each edge at a video cut (checked by eye on a contact sheet):
# 47-76 dance/dog-agility/drift/elephant/flamingo, 193-212 tennis/train/black swan,
# 299-320 kite-surf/dog/motocross-jump/paragliding. 72 of 345 frames (20.9 %).
DAVIS_VAL_BLOCKS = ((47, 76), (193, 212), (299, 320))
COCO_VAL_FRACTION = 0.2
HORSE_BLOCK, HORSE_VAL_BLOCK_MOD = 10, 2  # horse numbers in blocks of 10; every 5th block is val


# --------------------------------------------------------------------------- split
def coco_image_id(stem: str) -> str:
    """'baseball bat00_000000123456' -> '000000123456'."""
    return stem.rsplit("_", 1)[-1]


def dataset_stems(data_root: Path, dataset: str) -> List[str]:
    """Stems with a usable image/mask pair (FolderDataset's header checks)."""
    return sorted(ref.name for ref in FolderDataset(data_root / dataset).objects)


def make_split(stems: Dict[str, Sequence[str]]) -> Tuple[List[str], List[str]]:
    """Deterministic train/val split of {dataset: stems} -> (train, val) lists of 'dataset/stem'.

    davis345: the whole-video frame blocks DAVIS_VAL_BLOCKS; coco_mval: 20 % of the distinct
    COCO image ids (a seeded permutation; an image id is never in both); weizmann_horse: horse
    numbers in blocks of 10, every fifth block (21-30, 71-80, ...) in val.
    """
    train, val = [], []
    for dataset, names in sorted(stems.items()):
        names = sorted(names)
        if dataset == "davis345":
            is_val = {s: any(a <= int(s) <= b for a, b in DAVIS_VAL_BLOCKS) for s in names}
        elif dataset == "coco_mval":
            ids = sorted({coco_image_id(s) for s in names})
            order = object_rng(0, "split", dataset).permutation(len(ids))
            val_ids = {ids[i] for i in order[: round(COCO_VAL_FRACTION * len(ids))]}
            is_val = {s: coco_image_id(s) in val_ids for s in names}
        elif dataset == "weizmann_horse":
            is_val = {s: ((int(s[len("horse"):]) - 1) // HORSE_BLOCK) % 5 == HORSE_VAL_BLOCK_MOD for s in names}
        else:
            raise ValueError(f"no split rule for dataset {dataset!r}")
        for s in names:
            (val if is_val[s] else train).append(f"{dataset}/{s}")
    check_split(train, val)
    return train, val


def check_split(train: Sequence[str], val: Sequence[str]) -> None:
    """Raise ValueError if a file, or a COCO image id, is in both lists."""
    both = sorted(set(train) & set(val))
    if both:
        raise ValueError(f"{len(both)} entries in both train and val, e.g. {both[:3]}")
    ids = [{coco_image_id(x.split("/", 1)[1]) for x in part if x.startswith("coco_mval/")} for part in (train, val)]
    shared = sorted(ids[0] & ids[1])
    if shared:
        raise ValueError(f"{len(shared)} COCO image ids in both train and val, e.g. {shared[:3]}")


def write_split(data_root: Path, split_dir: Path) -> Tuple[List[str], List[str]]:
    train, val = make_split({d: dataset_stems(data_root, d) for d in DATASETS})
    header = ("# {} split of ../shared/data for the tiny SAM, written by scripts/train_tiny_sam.py "
              "--write-split (deterministic: see make_split). One 'dataset/stem' per line.\n")
    for name, items in (("train", train), ("val", val)):
        write_text(split_dir / f"{name}.txt", header.format(name) + "".join(x + "\n" for x in items))
    return train, val


def read_split_list(path: Path) -> List[str]:
    return sorted(f"{d}/{s}" for d, stems in load_split(path).items() for s in stems)


# --------------------------------------------------------------------------- data
@dataclass
class TrainImage:
    """One training image at the model's input scale (longest side = img_size, SAM's resize)."""

    name: str
    image: np.ndarray  # (h, w, 3) uint8
    objects: List[np.ndarray]  # (h, w) uint8 soft masks 0..255: the whole object, then its parts


def object_masks(m: np.ndarray, mode: str) -> List[np.ndarray]:
    """Masks of one file: palette (DAVIS) -> all ids > 0 merged (255 = void) + each id if several;
    grey -> m > 127."""
    if mode != "P":
        return [m > 127]
    ids = [int(i) for i in np.unique(m) if 0 < i < 255]
    merged = (m > 0) & (m != 255)
    return [merged] + ([m == i for i in ids] if len(ids) > 1 else [])


def load_train_images(data_root: Path, names: Sequence[str], img_size: int, min_pixels: int,
                      progress: bool = True) -> List[TrainImage]:
    """Read and resize every listed image and its object masks once (kept in RAM)."""
    transform = ResizeLongestSide(img_size)
    by_dataset: Dict[str, List[str]] = {}
    for name in names:
        dataset, stem = name.split("/", 1)
        by_dataset.setdefault(dataset, []).append(stem)
    out = []
    bar = tqdm(total=len(names), desc="load images", unit="img", disable=not progress)
    for dataset, stems in sorted(by_dataset.items()):
        ds = FolderDataset(data_root / dataset, stems=stems)
        for ref in ds.objects:
            bar.update()
            image = read_image(ref.image_path)
            m, mode = read_mask(ref.mask_path)
            small = transform.apply_image(image)  # exactly SAM's own resize (what inference sees)
            h, w = small.shape[:2]
            interp = cv2.INTER_AREA if max(m.shape) > img_size else cv2.INTER_LINEAR
            objects = [cv2.resize(o.astype(np.uint8) * 255, (w, h), interpolation=interp) for o in object_masks(m, mode)]
            objects = [o for o in objects if (o > 127).sum() >= min_pixels]
            if objects:
                out.append(TrainImage(f"{dataset}/{ref.name}", np.ascontiguousarray(small), objects))
    bar.close()
    if not out:
        raise SystemExit("no usable training images")
    return out


@dataclass
class AugConfig:
    flip: float = 0.5
    zoom_prob: float = 0.5
    zoom_max: float = 2.0
    color_prob: float = 0.8
    paste_prob: float = 0.3
    paste_min: float = 0.15  # pasted object's longest side, fraction of the image's longest side
    paste_max: float = 0.6
    min_pixels: int = 32  # smallest target (pixels at input scale)


def geometric(img: TrainImage, rng: np.random.Generator, aug: AugConfig, anchor: int) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Flip and zoom-in crop (same output size; the crop keeps a pixel of object `anchor`)."""
    h, w = img.image.shape[:2]
    z = math.exp(rng.uniform(0.0, math.log(aug.zoom_max))) if rng.random() < aug.zoom_prob else 1.0
    flip = rng.random() < aug.flip
    ys, xs = np.nonzero(img.objects[anchor] > 127)
    k = rng.integers(len(ys))
    cy, cx = ys[k] + 0.5, xs[k] + 0.5  # this pixel stays inside the crop
    ch, cw = h / z, w / z
    y0 = rng.uniform(max(0.0, cy - ch), min(h - ch, cy))
    x0 = rng.uniform(max(0.0, cx - cw), min(w - cw, cx))
    # output (u, v) = z * (x - x0, y - y0), then u -> w - 1 - u when flipped
    a, tx = (-z, w - 1 + z * x0) if flip else (z, -z * x0)
    M = np.array([[a, 0.0, tx], [0.0, z, -z * y0]], dtype=np.float64)
    if z == 1.0 and not flip:
        return img.image.copy(), [o.copy() for o in img.objects]
    image = cv2.warpAffine(img.image, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    objects = [cv2.warpAffine(o, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) for o in img.objects]
    return image, objects


def paste_object(image: np.ndarray, donor: TrainImage, rng: np.random.Generator, aug: AugConfig) -> Optional[np.ndarray]:
    """Paste one of `donor`'s objects (cut by its soft mask) onto `image` in place; its mask, or None."""
    src = donor.objects[rng.integers(len(donor.objects))]
    ys, xs = np.nonzero(src > 127)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    patch, alpha = donor.image[y0:y1, x0:x1], src[y0:y1, x0:x1]
    h, w = image.shape[:2]
    ph, pw = patch.shape[:2]
    s = rng.uniform(aug.paste_min, aug.paste_max) * max(h, w) / max(ph, pw)
    s = min(s, 0.95 * h / ph, 0.95 * w / pw)
    nh, nw = max(2, round(ph * s)), max(2, round(pw * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    patch, alpha = cv2.resize(patch, (nw, nh), interpolation=interp), cv2.resize(alpha, (nw, nh), interpolation=interp)
    if rng.random() < aug.flip:
        patch, alpha = patch[:, ::-1], alpha[:, ::-1]
    ty, tx = rng.integers(0, h - nh + 1), rng.integers(0, w - nw + 1)
    a = alpha.astype(np.float32)[..., None] / 255.0
    region = image[ty:ty + nh, tx:tx + nw].astype(np.float32)
    image[ty:ty + nh, tx:tx + nw] = np.clip(a * patch + (1 - a) * region + 0.5, 0, 255).astype(np.uint8)
    pasted = np.zeros((h, w), np.uint8)
    pasted[ty:ty + nh, tx:tx + nw] = alpha
    return pasted if (pasted > 127).sum() >= aug.min_pixels else None


def color_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation (each x U(0.7, 1.3)), 5 % greyscale."""
    x = image.astype(np.float32)
    x *= rng.uniform(0.7, 1.3)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.7, 1.3) + mean
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    sat = 0.0 if rng.random() < 0.05 else rng.uniform(0.7, 1.3)
    x = grey[..., None] + (x - grey[..., None]) * sat
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Prompt:
    target: np.ndarray  # (R, R) float32 soft mask in the padded input frame at loss resolution
    boxes: Optional[np.ndarray] = None  # (1, 4) input-frame pixels
    points: Optional[np.ndarray] = None  # (1, k, 2)
    multimask: bool = False
    kind: str = "box"


def sample_prompt(mask: np.ndarray, rng: np.random.Generator) -> Tuple[str, Optional[np.ndarray], Optional[np.ndarray]]:
    """SAM-style prompt for a binary (h, w) mask: jittered box (1/2), one click (1/4), 2-5 clicks (1/4)."""
    u = rng.random()
    if u < 0.5:
        box = fix_boxes(mask_to_box(mask)[None], mask.shape)[0]
        return "box", sam_jitter_boxes(box, 1, rng, mask.shape), None
    k = 1 if u < 0.75 else int(rng.integers(2, 6))
    return ("click" if k == 1 else "clicks"), None, sample_points(mask, k, 1, rng)


def make_sample(images: List[TrainImage], index: int, rng: np.random.Generator, aug: AugConfig,
                prompts_per_image: int, img_size: int, loss_res: int) -> Tuple[np.ndarray, List[Prompt]]:
    """One augmented image (h, w, 3) uint8 and its prompts with targets."""
    img = images[index]
    image, objects = geometric(img, rng, aug, anchor=int(rng.integers(len(img.objects))))
    candidates = [o for o in objects if (o > 127).sum() >= aug.min_pixels]
    first = None
    if rng.random() < aug.paste_prob and len(images) > 1:
        donor = images[(index + 1 + int(rng.integers(len(images) - 1))) % len(images)]
        pasted = paste_object(image, donor, rng, aug)
        if pasted is not None:
            cover = 1.0 - pasted.astype(np.float32) / 255.0
            occluded = [(o * cover + 0.5).astype(np.uint8) for o in candidates]
            candidates = [pasted] + [o for o in occluded if (o > 127).sum() >= aug.min_pixels]
            first = 0
    if not candidates:  # the crop cut every object too small: no zoom, no paste
        image, candidates = img.image.copy(), list(img.objects)
        first = None
    if rng.random() < aug.color_prob:
        image = color_jitter(image, rng)
    h, w = image.shape[:2]
    prompts = []
    for p in range(prompts_per_image):
        soft = candidates[first if (p == 0 and first is not None) else int(rng.integers(len(candidates)))]
        kind, boxes, points = sample_prompt(soft > 127, rng)
        canvas = np.zeros((img_size, img_size), np.float32)
        canvas[:h, :w] = soft.astype(np.float32) / 255.0
        target = cv2.resize(canvas, (loss_res, loss_res), interpolation=cv2.INTER_AREA)
        prompts.append(Prompt(target, boxes, points, multimask=kind == "click", kind=kind))
    return image, prompts


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, S, S) uint8, content top-left, zero elsewhere
    sizes: List[Tuple[int, int]]
    prompts: List[List[Prompt]]


def build_batch(images: List[TrainImage], step: int, cfg: "RunConfig", aug: AugConfig) -> Batch:
    """The batch of `step`: a pure function of (seed, step). Epochs are seeded permutations."""
    n, b = len(images), cfg.batch_size
    epoch, k = divmod(step, math.ceil(n / b))
    order = object_rng(cfg.seed, "epoch", epoch).permutation(n)
    s = cfg.arch["img_size"]
    out = torch.zeros((b, 3, s, s), dtype=torch.uint8)
    sizes, prompts = [], []
    for j in range(b):
        rng = object_rng(cfg.seed, "sample", step, j)
        image, ps = make_sample(images, int(order[(k * b + j) % n]), rng, aug, cfg.prompts_per_image, s, cfg.loss_res)
        h, w = image.shape[:2]
        out[j, :, :h, :w] = torch.from_numpy(image).permute(2, 0, 1)
        sizes.append((h, w))
        prompts.append(ps)
    return Batch(out, sizes, prompts)


# --------------------------------------------------------------------------- model step
@dataclass
class RunConfig:
    arch: Dict
    seed: int = 0
    total_steps: int = 3600
    batch_size: int = 8
    prompts_per_image: int = 2
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    min_lr_ratio: float = 0.02
    clip: float = 1.0
    iou_weight: float = 1.0
    loss_res: int = 256
    train_list_sha256: str = ""


RESUME_KEYS = ("arch", "seed", "total_steps", "batch_size", "prompts_per_image", "lr", "weight_decay",
               "warmup_steps", "min_lr_ratio", "clip", "iou_weight", "loss_res", "train_list_sha256")


def lr_at(step: int, cfg: RunConfig, rewarm_from: Optional[int] = None, rewarm_steps: int = 0) -> float:
    """Linear warmup, cosine decay to min_lr_ratio * lr at total_steps; an extra linear re-warmup
    after `rewarm_from` (a fresh optimizer on --init weights)."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    progress = min(1.0, step / max(1, cfg.total_steps))
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if rewarm_from is not None and rewarm_steps > 0:
        warm = min(warm, (step - rewarm_from + 1) / rewarm_steps)
    return cfg.lr * warm * cos


def normalize(sam, batch: Batch) -> torch.Tensor:
    """SAM's preprocess (normalise, zero padding) for a batch of top-left placed images."""
    x = (batch.images.float() - sam.pixel_mean) / sam.pixel_std
    for j, (h, w) in enumerate(batch.sizes):
        x[j, :, h:, :] = 0
        x[j, :, :, w:] = 0
    return x


def batch_loss(sam, batch: Batch, cfg: RunConfig, autocast: bool) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Mean over prompts of BCE + Dice (min over the 3 masks for a single click) + MSE(IoU)."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
    r = cfg.loss_res
    with ctx:
        emb = sam.image_encoder(normalize(sam, batch))
        dense_pe = sam.prompt_encoder.get_dense_pe()
    losses, mask_terms, iou_terms = [], [], []
    for j, prompts in enumerate(batch.prompts):
        for p in prompts:
            points = boxes = None
            if p.points is not None:
                pts = torch.as_tensor(p.points, dtype=torch.float)
                points = (pts, torch.ones(pts.shape[:2], dtype=torch.int))
            if p.boxes is not None:
                boxes = torch.as_tensor(p.boxes, dtype=torch.float)
            with ctx:
                sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
                low, iou_pred = sam.mask_decoder(emb[j:j + 1], dense_pe, sparse, dense, multimask_output=p.multimask)
            logits = F.interpolate(low.float(), (r, r), mode="bilinear", align_corners=False)  # (1, M, r, r)
            target = torch.from_numpy(p.target)[None, None]
            m = logits.shape[1]
            bce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none").mean((2, 3))[0]
            dice = torch.stack([dice_loss(logits[:, i:i + 1], target) for i in range(m)])
            mask_loss = bce + dice  # (M,)
            with torch.no_grad():
                pred, gt = logits[0] > 0, target[0] > 0.5
                inter = (pred & gt).flatten(1).sum(1).float()
                union = (pred | gt).flatten(1).sum(1).float()
                iou_true = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
            iou_loss = F.mse_loss(iou_pred.float()[0], iou_true)
            best = mask_loss.min() if p.multimask else mask_loss[0]
            losses.append(best + cfg.iou_weight * iou_loss)
            mask_terms.append(float(best.detach()))
            iou_terms.append(float(iou_loss.detach()))
    loss = torch.stack(losses).mean()
    return loss, {"mask_loss": float(np.mean(mask_terms)), "iou_loss": float(np.mean(iou_terms))}


def param_groups(sam, weight_decay: float) -> List[Dict]:
    """AdamW groups: no decay for norms, biases, layer scales, and learned tokens/embeddings."""
    decay, no_decay = [], []
    for name, p in sam.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim <= 1 or "token" in name or "embed" in name
        (no_decay if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------- validation
class ValSet:
    """The first n validation objects of a fixed shuffle (all datasets mixed), loaded once."""

    def __init__(self, data_root: Path, split_file: Path, n: int):
        names = read_split_list(split_file)
        order = object_rng(0, "val-order").permutation(len(names))
        picked = [names[i] for i in order[:n]]
        self.samples = []
        for dataset in DATASETS:
            stems = [x.split("/", 1)[1] for x in picked if x.startswith(dataset + "/")]
            if stems:
                ds = FolderDataset(data_root / dataset, stems=stems)
                self.samples.extend(s for s in ds if s is not None)


def evaluate_val(sam, valset: ValSet, clicks: int = 3) -> Dict[str, float]:
    """mIoU of the model (a copy, fp32, eval mode) on the validation objects with `stablesam eval`'s
    machinery: gt-box with single-mask output, and one click with the best of the 3 masks by
    predicted IoU (`clicks` random clicks per object)."""
    from stablesam.metrics import mask_iou
    from stablesam.modeling import StableSam
    from stablesam.models import SamSegmenter
    from stablesam.prompts import generate

    model = StableSam(copy.deepcopy(sam).float().eval())
    model.plugins_enabled = False
    seg = SamSegmenter("tiny-sam", model)
    box_ious, click_ious = [], []
    for s in valset.samples:
        seg.set_image(s.image)
        rng = object_rng(0, "val", s.dataset, s.name)
        box_ious.append(mask_iou(seg.predict(generate("gt-box", s.mask, 1, rng))[0], s.mask, s.ignore))
        masks = seg.predict(generate("points@1", s.mask, clicks, rng), multimask=True)
        click_ious.append(float(np.mean([mask_iou(m, s.mask, s.ignore) for m in masks])))
    return {"objects": len(valset.samples), "miou_gt_box": float(np.mean(box_ious)),
            "miou_1click_best": float(np.mean(click_ious))}


# --------------------------------------------------------------------------- main
def write_csv(path: Path, rows: List[Dict]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding davis345/, coco_mval/, weizmann_horse/")
    p.add_argument("--split-dir", type=Path, default=DEFAULT_SPLIT_DIR, help="where train.txt and val.txt live")
    p.add_argument("--write-split", action="store_true", help="(re)write the split files from --data-root and exit")
    p.add_argument("--out", type=Path, help="run folder: checkpoint.pt, log.csv, val.csv, config.json")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this invocation (stops cleanly, checkpoints)")
    p.add_argument("--total-steps", type=int, default=3600, help="schedule length (warmup + cosine decay)")
    p.add_argument("--steps-this-run", type=int, default=None, help="stop this invocation after this many steps")
    p.add_argument("--batch-size", type=int, default=8, help="images per step")
    p.add_argument("--prompts-per-image", type=int, default=2, help="prompts (decoder passes) per image per step")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--paste-prob", type=float, default=AugConfig.paste_prob, help="probability of a copy-paste composite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present (exact)")
    p.add_argument("--init", type=Path, help="start from an exported SAM file (fresh optimizer, step from its meta) "
                   "when there is no checkpoint to resume")
    p.add_argument("--rewarmup-steps", type=int, default=100, help="LR re-warmup after --init")
    p.add_argument("--threads", type=int, default=1, help="torch threads (keep 1 on a shared 2-core machine)")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (default: bfloat16 autocast where the CPU has it)")
    p.add_argument("--export", type=Path, help="write the weights here as a stablesam SAM file (at checkpoints and at the end)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--eval-val", type=int, default=0, metavar="N", help="mIoU on N validation objects at the end "
                   "(and every --eval-minutes)")
    p.add_argument("--eval-minutes", type=float, default=30.0)
    p.add_argument("--eval-only", action="store_true", help="only evaluate --init (or OUT/checkpoint.pt) on --eval-val objects")
    p.add_argument("--arch", type=json.loads, default=None, help="JSON overrides of TINY_SAM_ARCH (experiments)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    progress = not args.no_progress
    if args.write_split:
        train, val = write_split(args.data_root, args.split_dir)
        print(f"wrote {args.split_dir}/train.txt ({len(train)}) and val.txt ({len(val)})")
        return 0
    train_file, val_file = args.split_dir / "train.txt", args.split_dir / "val.txt"
    train_names, val_names = read_split_list(train_file), read_split_list(val_file)
    check_split(train_names, val_names)

    if args.eval_only:
        n = args.eval_val or 100
        if args.init is not None:
            sam, source = load_sam_file(args.init), str(args.init)
        elif args.out is not None and (args.out / "checkpoint.pt").is_file():
            ckpt = read_weights(args.out / "checkpoint.pt")
            sam = build_small_sam(ckpt["arch"])
            sam.load_state_dict(ckpt["model"])
            source = f"{args.out / 'checkpoint.pt'} (step {ckpt['step']})"
        else:
            raise SystemExit("--eval-only needs --init FILE or --out with a checkpoint.pt")
        result = evaluate_val(sam, ValSet(args.data_root, val_file, n))
        print(json.dumps({"model": source, **result}, indent=2))
        return 0
    if args.out is None:
        raise SystemExit("--out DIR is required for training")

    use_bf16 = not args.no_bf16 and torch.backends.mkldnn.is_available() and _bf16_supported()
    ckpt_path = args.out / "checkpoint.pt"
    ckpt = read_weights(ckpt_path) if args.resume and ckpt_path.is_file() else None
    init_obj = None
    arch = dict(TINY_SAM_ARCH, **(args.arch or {}))
    if ckpt is not None:
        arch = ckpt["arch"]
    elif args.init is not None:
        init_obj = read_weights(args.init)
        arch = init_obj["arch"]
    cfg = RunConfig(arch=arch, seed=args.seed, total_steps=args.total_steps, batch_size=args.batch_size,
                    prompts_per_image=args.prompts_per_image, lr=args.lr, weight_decay=args.weight_decay,
                    warmup_steps=args.warmup_steps,
                    train_list_sha256=hashlib.sha256("\n".join(train_names).encode()).hexdigest()[:16])
    aug = AugConfig(paste_prob=args.paste_prob)

    torch.manual_seed(cfg.seed)
    sam = build_small_sam(cfg.arch)
    start, train_seconds, log, val_log = 0, 0.0, [], []
    rewarm_from = None
    if ckpt is not None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise SystemExit(f"{ckpt_path} is not a tiny-SAM training checkpoint")
        saved = ckpt["config"]
        changed = [k for k in RESUME_KEYS if saved.get(k) != asdict(cfg)[k]]
        if changed:
            raise SystemExit(f"{ckpt_path} belongs to another run (differs in: {', '.join(changed)}; "
                             f"saved {({k: saved.get(k) for k in changed})}); use another --out or drop --resume")
        sam.load_state_dict(ckpt["model"])
        start, train_seconds = ckpt["step"], ckpt["train_seconds"]
        log, val_log = list(ckpt["log"]), list(ckpt.get("val", []))
        rewarm_from = ckpt.get("rewarm_from")
        print(f"resuming {ckpt_path} at step {start} ({train_seconds / 60:.1f} min trained)")
    elif init_obj is not None:
        sam = load_sam_file(args.init)
        meta = init_obj.get("meta", {})
        start, train_seconds = int(meta.get("steps", 0)), float(meta.get("minutes", 0.0)) * 60
        rewarm_from = start
        if meta.get("seed", cfg.seed) != cfg.seed or meta.get("batch_size", cfg.batch_size) != cfg.batch_size:
            print(f"note: {args.init} was trained with seed {meta.get('seed')} / batch {meta.get('batch_size')}")
        print(f"starting from {args.init} at step {start} (fresh optimizer, {args.rewarmup_steps}-step LR re-warmup)")
    sam.train()
    optimizer = torch.optim.AdamW(param_groups(sam, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    params = [p for g in optimizer.param_groups for p in g["params"]]

    args.out.mkdir(parents=True, exist_ok=True)
    n_enc = sum(p.numel() for p in sam.image_encoder.parameters())
    n_all = sum(p.numel() for p in sam.parameters())
    write_text(args.out / "config.json", json.dumps({**asdict(cfg), "aug": asdict(aug), "bf16": use_bf16,
                                                      "threads": args.threads, "encoder_params": n_enc,
                                                      "total_params": n_all, "train_images": len(train_names)}, indent=2))
    print(f"tiny SAM: encoder {n_enc / 1e6:.3f} M params, total {n_all / 1e6:.3f} M; bf16 autocast: {use_bf16}; "
          f"threads: {args.threads}")

    valset = None

    def run_eval(step: int) -> None:
        nonlocal valset
        if args.eval_val <= 0:
            return
        if valset is None:
            valset = ValSet(args.data_root, val_file, args.eval_val)
        t = time.time()
        result = evaluate_val(sam, valset)
        sam.train()
        val_log.append({"step": step, "minutes": round(train_seconds / 60, 2), **result})
        write_csv(args.out / "val.csv", val_log)
        tqdm.write(f"val @ step {step}: {json.dumps(result)} ({time.time() - t:.0f} s)")

    def meta(step: int) -> Dict:
        m = {"steps": step, "total_steps": cfg.total_steps, "seed": cfg.seed, "minutes": round(train_seconds / 60, 2),
             "batch_size": cfg.batch_size, "prompts_per_image": cfg.prompts_per_image, "lr": cfg.lr,
             "data": {"datasets": list(DATASETS), "split": _display(train_file), "train_images": len(train_names),
                      "train_list_sha256": cfg.train_list_sha256},
             "trainer": "scripts/train_tiny_sam.py", "bf16": use_bf16}
        if val_log:
            m["val"] = val_log[-1]
        return m

    def save(step: int) -> None:
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "step": step, "arch": cfg.arch, "config": asdict(cfg),
                           "model": {k: v.detach().clone() for k, v in sam.state_dict().items()},
                           "optimizer": optimizer.state_dict(), "train_seconds": train_seconds,
                           "rewarm_from": rewarm_from, "log": log, "val": val_log}, ckpt_path)
        write_csv(args.out / "log.csv", log)
        if args.export is not None:
            save_sam_file(sam, cfg.arch, args.export, meta=meta(step))

    stop = {"signal": None}

    def request_stop(signum, frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    step = start
    if start < cfg.total_steps:
        images = load_train_images(args.data_root, train_names, cfg.arch["img_size"], aug.min_pixels, progress)
        print(f"{len(images)} training images in RAM ({sum(len(i.objects) for i in images)} objects); "
              f"{time.time() - t_start:.0f} s since start")
        deadline = None if args.minutes is None else t_start + args.minutes * 60
        reserve = 20.0 + (0.25 * args.eval_val if args.eval_val else 0.0)
        pool = concurrent.futures.ThreadPoolExecutor(1)
        pending = pool.submit(build_batch, images, start, cfg, aug)
        last_ckpt = last_eval = time.time()
        step_time = None
        bar = tqdm(total=cfg.total_steps, initial=start, desc="train tiny SAM", unit="step", disable=not progress)
        loss_ema = None
        while step < cfg.total_steps:
            if stop["signal"] is not None:
                tqdm.write(f"signal {stop['signal']}: stopping after step {step}")
                break
            if args.steps_this_run is not None and step - start >= args.steps_this_run:
                break
            if deadline is not None and time.time() + (step_time or 0) + reserve > deadline:
                tqdm.write(f"time budget of {args.minutes} min reached at step {step}")
                break
            t0 = time.time()
            batch = pending.result()
            if step + 1 < cfg.total_steps:
                pending = pool.submit(build_batch, images, step + 1, cfg, aug)
            lr = lr_at(step, cfg, rewarm_from, args.rewarmup_steps)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss, parts = batch_loss(sam, batch, cfg, use_bf16)
            if not torch.isfinite(loss):
                raise SystemExit(f"loss is {loss.item()} at step {step + 1}; the last checkpoint in {ckpt_path} "
                                 "is intact. Try a lower --lr.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            optimizer.step()
            step += 1
            dt = time.time() - t0
            train_seconds += dt
            step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
            value = float(loss.detach())
            loss_ema = value if loss_ema is None else 0.98 * loss_ema + 0.02 * value
            log.append({"step": step, "loss": round(value, 5), "mask_loss": round(parts["mask_loss"], 5),
                        "iou_loss": round(parts["iou_loss"], 5), "lr": f"{lr:.3e}", "seconds": round(train_seconds, 2)})
            bar.update()
            bar.set_postfix(loss=f"{loss_ema:.4f}", lr=f"{lr:.1e}", s_step=f"{step_time:.2f}")
            if time.time() - last_ckpt >= args.checkpoint_minutes * 60 and step < cfg.total_steps:
                save(step)
                last_ckpt = time.time()
            if args.eval_val and time.time() - last_eval >= args.eval_minutes * 60 and step < cfg.total_steps:
                run_eval(step)
                last_eval = time.time()
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
    run_eval(step)  # no-op without --eval-val
    save(step)
    done = "finished" if step >= cfg.total_steps else "stopped"
    print(f"{done} at step {step}/{cfg.total_steps}; {train_seconds / 60:.1f} min trained in total; "
          f"checkpoint {ckpt_path}" + (f"; weights {args.export}" if args.export else ""))
    if stop["signal"] is not None:
        return 128 + int(stop["signal"])
    return 0


def _display(path: Path) -> str:
    """A path relative to the repository when inside it (what a file's meta should record)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


if __name__ == "__main__":
    sys.exit(main())
