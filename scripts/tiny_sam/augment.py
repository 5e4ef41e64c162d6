"""Training images in RAM, augmentation, SAM-style prompts and the batch of a step.

Every step's batch is a pure function of (seed, step) (`stablesam.prompts.generation.object_rng`), so a
resumed run sees exactly what an uninterrupted run sees.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide
from tqdm import tqdm

from stablesam.data.datasets import FolderDataset
from stablesam.prompts.generation import fix_boxes, mask_to_box, object_rng, sam_jitter_boxes, sample_points


@dataclass
class TrainImage:
    """One training image at the model's input scale (longest side = img_size, SAM's resize)."""

    name: str
    image: np.ndarray  # (h, w, 3) uint8
    objects: List[np.ndarray]  # (h, w) uint8 soft masks 0..255: the whole object, then its parts
    ignore: Optional[np.ndarray] = None  # (h, w) uint8 soft map 0..255 of ignore pixels, or None


def load_train_images(data_root: Path, names: Sequence[str], img_size: int, min_pixels: int,
                      progress: bool = True) -> List[TrainImage]:
    """Read and resize every listed image, its object masks and its ignore map once (kept in RAM).

    Objects come from `FolderDataset` (the package's mask rules: all ids > 0 of a palette mask
    form one object, 255 there and a trimap's 128 are ignore); a palette mask with several ids
    also gives each id as a part.
    """
    transform = ResizeLongestSide(img_size)
    by_dataset: Dict[str, List[str]] = {}
    for name in names:
        dataset, stem = name.split("/", 1)
        by_dataset.setdefault(dataset, []).append(stem)
    out = []
    bar = tqdm(total=len(names), desc="load images", unit="img", disable=not progress)
    for dataset, stems in sorted(by_dataset.items()):
        whole = FolderDataset(data_root / dataset, stems=stems)
        parts = FolderDataset(data_root / dataset, stems=stems, mask_mode="instances", ignore_value=255) \
            if dataset == "davis345" else None
        part_refs: Dict[str, List[int]] = {}
        for i, ref in enumerate(parts.objects if parts else []):
            part_refs.setdefault(ref.name.split("#")[0], []).append(i)
        for sample in whole:
            bar.update()
            small = transform.apply_image(sample.image)  # exactly SAM's own resize (what inference sees)
            h, w = small.shape[:2]
            interp = cv2.INTER_AREA if max(sample.mask.shape) > img_size else cv2.INTER_LINEAR

            def resize(m: np.ndarray) -> np.ndarray:
                return cv2.resize(m.astype(np.uint8) * 255, (w, h), interpolation=interp)

            masks = [sample.mask]
            if parts is not None and len(part_refs.get(sample.name, [])) > 1:
                masks += [parts[i].mask for i in part_refs[sample.name]]
            objects = [o for o in map(resize, masks) if (o > 127).sum() >= min_pixels]
            if objects:
                ignore = None if sample.ignore is None else resize(sample.ignore)
                out.append(TrainImage(f"{dataset}/{sample.name}", np.ascontiguousarray(small), objects, ignore))
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


def geometric(img: TrainImage, rng: np.random.Generator, aug: AugConfig,
              anchor: int) -> Tuple[np.ndarray, List[np.ndarray], Optional[np.ndarray]]:
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
    ignore = img.ignore
    if z == 1.0 and not flip:
        return img.image.copy(), [o.copy() for o in img.objects], None if ignore is None else ignore.copy()
    # output (u, v) = z * (x - x0, y - y0), then u -> w - 1 - u when flipped
    a, tx = (-z, w - 1 + z * x0) if flip else (z, -z * x0)
    M = np.array([[a, 0.0, tx], [0.0, z, -z * y0]], dtype=np.float64)

    def warp(m: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(m, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    image = cv2.warpAffine(img.image, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return image, [warp(o) for o in img.objects], None if ignore is None else warp(ignore)


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
    valid: Optional[np.ndarray] = None  # (R, R) float32 weight, 0 on ignore pixels; None: all valid
    boxes: Optional[np.ndarray] = None  # (1, 4) input-frame pixels
    points: Optional[np.ndarray] = None  # (1, k, 2)
    multimask: bool = False
    kind: str = "box"


def sample_prompt(mask: np.ndarray, rng: np.random.Generator, box_share: float = 0.5,
                  click_share: float = 0.25) -> Tuple[str, Optional[np.ndarray], Optional[np.ndarray]]:
    """SAM-style prompt for a binary (h, w) mask: jittered box (box_share), one click
    (click_share), else 2-5 clicks."""
    u = rng.random()
    if u < box_share:
        box = fix_boxes(mask_to_box(mask)[None], mask.shape)[0]
        return "box", sam_jitter_boxes(box, 1, rng, mask.shape), None
    k = 1 if u < box_share + click_share else int(rng.integers(2, 6))
    return ("click" if k == 1 else "clicks"), None, sample_points(mask, k, 1, rng)


def to_loss_frame(m: np.ndarray, img_size: int, loss_res: int) -> np.ndarray:
    """(h, w) uint8 0..255 at input scale -> (loss_res, loss_res) float32 0..1 in the padded frame."""
    h, w = m.shape
    canvas = np.zeros((img_size, img_size), np.float32)
    canvas[:h, :w] = m.astype(np.float32) / 255.0
    return cv2.resize(canvas, (loss_res, loss_res), interpolation=cv2.INTER_AREA)


def make_sample(images: List[TrainImage], index: int, rng: np.random.Generator, aug: AugConfig,
                prompts_per_image: int, img_size: int, loss_res: int) -> Tuple[np.ndarray, List[Prompt]]:
    """One augmented image (h, w, 3) uint8 and its prompts with targets."""
    img = images[index]
    image, objects, ignore = geometric(img, rng, aug, anchor=int(rng.integers(len(img.objects))))
    candidates = [o for o in objects if (o > 127).sum() >= aug.min_pixels]
    first = None
    if rng.random() < aug.paste_prob and len(images) > 1:
        donor = images[(index + 1 + int(rng.integers(len(images) - 1))) % len(images)]
        pasted = paste_object(image, donor, rng, aug)
        if pasted is not None:
            cover = 1.0 - pasted.astype(np.float32) / 255.0
            occluded = [(o * cover + 0.5).astype(np.uint8) for o in candidates]
            candidates = [pasted] + [o for o in occluded if (o > 127).sum() >= aug.min_pixels]
            if ignore is not None:  # pixels under the pasted object are labelled now
                ignore = (ignore * cover + 0.5).astype(np.uint8)
            first = 0
    if not candidates:  # the crop cut every object too small: no zoom, no paste
        image, candidates, ignore = img.image.copy(), list(img.objects), img.ignore
        first = None
    if rng.random() < aug.color_prob:
        image = color_jitter(image, rng)
    valid = None if ignore is None or not ignore.any() else 1.0 - to_loss_frame(ignore, img_size, loss_res)
    prompts = []
    for p in range(prompts_per_image):
        soft = candidates[first if (p == 0 and first is not None) else int(rng.integers(len(candidates)))]
        kind, boxes, points = sample_prompt(soft > 127, rng)
        prompts.append(Prompt(to_loss_frame(soft, img_size, loss_res), valid, boxes, points,
                              multimask=kind == "click", kind=kind))
    return image, prompts


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, S, S) uint8, content top-left, zero elsewhere
    sizes: List[Tuple[int, int]]
    prompts: List[List[Prompt]]


def build_batch(images: List[TrainImage], step: int, seed: int, batch_size: int, prompts_per_image: int,
                img_size: int, loss_res: int, aug: AugConfig) -> Batch:
    """The batch of `step`: a pure function of (seed, step). Epochs are seeded permutations."""
    n, b = len(images), batch_size
    epoch, k = divmod(step, math.ceil(n / b))
    order = object_rng(seed, "epoch", epoch).permutation(n)
    out = torch.zeros((b, 3, img_size, img_size), dtype=torch.uint8)
    sizes, prompts = [], []
    for j in range(b):
        rng = object_rng(seed, "sample", step, j)
        image, ps = make_sample(images, int(order[(k * b + j) % n]), rng, aug, prompts_per_image, img_size, loss_res)
        h, w = image.shape[:2]
        out[j, :, :h, :w] = torch.from_numpy(image).permute(2, 0, 1)
        sizes.append((h, w))
        prompts.append(ps)
    return Batch(out, sizes, prompts)
