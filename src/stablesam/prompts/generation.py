"""Prompt generation shared by training and evaluation.

Conventions (SAM's own, used everywhere): pixel coordinates of the original image, x right
(column), y down (row), as inclusive pixel indices. Boxes are float XYXY; the tight box of a
mask is [xmin, ymin, xmax, ymax] (as SAM's `batched_mask_to_box` and torchvision's
`masks_to_boxes`). Points are (x, y) = (col, row) as floats, integer-valued for sampled clicks.
Valid boxes lie in [0, W - 1] x [0, H - 1] with x1 - x0 >= 1 and y1 - y0 >= 1 (`fix_boxes`).
SAM's prompt encoder adds 0.5 itself, so prompts go to SAM unchanged.
"""

import hashlib
import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..limits import CLICKS, NOISE_SCALE
from .kinds import ADV_BOX, ADV_POINT, BEST_BOX, GT_BOX, NOISY_BOX, POINTS, SEARCHED

DEFAULT_PROMPTS = (
    "gt-box,noisy-box@0.1,noisy-box@0.2,noisy-box@0.3,noisy-box@0.4,noisy-box@0.5,"
    "points@1,points@3,points@5"
)
MAX_CLICKS = int(CLICKS.high)  # points@K: K at most this (stablesam.limits)
MAX_NOISE = NOISE_SCALE.high
_ACCEPTED = (f"accepted forms: 'gt-box', 'noisy-box@S' (S a number in 0..{MAX_NOISE:g}, e.g. noisy-box@0.4), "
             f"'points@K' (K an int in 1..{MAX_CLICKS}), 'adv-box@R' / 'best-box@R' (the worst / best "
             f"box within noisy-box@R's reach, R in 0..{MAX_NOISE:g}), 'adv-point' (the worst single click)")


@dataclass(frozen=True)
class PromptType:
    kind: str  # "gt-box" | "noisy-box" | "points" | "adv-box" | "best-box" | "adv-point"
    value: Union[None, float, int] = None  # noise scale (noisy-box, adv-/best-box) or clicks per set (points)

    @property
    def name(self) -> str:
        return self.kind if self.value is None else f"{self.kind}@{self.value}"

    @property
    def searched(self) -> bool:
        """True for the types a search finds per model (`stablesam.prompts.adversarial`), not `generate`."""
        return self.kind in SEARCHED

    def __str__(self) -> str:
        return self.name


def parse_prompt(name: Union[str, PromptType]) -> PromptType:
    """'gt-box' | 'noisy-box@S' | 'points@K' | 'adv-box@R' | 'best-box@R' | 'adv-point' -> PromptType."""
    if isinstance(name, PromptType):
        return name
    text = str(name).strip()
    kind, sep, arg = text.partition("@")
    if kind in (GT_BOX, ADV_POINT) and not sep:
        return PromptType(kind)
    if kind in (NOISY_BOX, ADV_BOX, BEST_BOX) and sep:
        try:
            scale = float(arg)
        except ValueError:
            raise ValueError(f"bad noise scale {arg!r} in prompt {text!r}; {_ACCEPTED}") from None
        if not math.isfinite(scale) or not NOISE_SCALE.low <= scale <= NOISE_SCALE.high:
            raise ValueError(f"noise scale {arg.strip()[:20]} in prompt {text[:40]!r} is out of range: it must be "
                             f"{NOISE_SCALE.text()}; {_ACCEPTED}")
        return PromptType(kind, scale)
    if kind == POINTS and sep:
        try:
            k = int(arg)
        except ValueError:
            raise ValueError(f"bad click count {arg!r} in prompt {text!r}; {_ACCEPTED}") from None
        if not 1 <= k <= MAX_CLICKS:
            raise ValueError(f"click count {str(k)[:20]} in prompt {text[:40]!r} is out of range: it must be {CLICKS.text()}; "
                             f"{_ACCEPTED}")
        return PromptType("points", k)
    raise ValueError(f"unknown prompt type {text!r}; {_ACCEPTED}")


def parse_prompts(names: str) -> list[PromptType]:
    """Comma-separated prompt names -> list of PromptType (no duplicates)."""
    out = [parse_prompt(s) for s in names.split(",") if s.strip()]
    if not out:
        raise ValueError(f"no prompt types in {names!r}; {_ACCEPTED}")
    seen = set()
    for p in out:
        if p.name in seen:
            raise ValueError(f"prompt type {p.name!r} listed twice in {names!r}")
        seen.add(p.name)
    return out


@dataclass
class Prompts:
    """n prompts for one object: boxes (n, 4) XYXY, or point_coords (n, k, 2) + point_labels (n, k)."""

    boxes: Optional[np.ndarray] = None
    point_coords: Optional[np.ndarray] = None
    point_labels: Optional[np.ndarray] = None

    def __len__(self) -> int:
        if self.boxes is not None:
            return len(self.boxes)
        if self.point_coords is not None:
            return len(self.point_coords)
        return 0

    def __getitem__(self, i) -> "Prompts":
        """Prompt(s) i, keeping the leading axis for an int (e.g. boxes (1, 4))."""
        if isinstance(i, (int, np.integer)):
            if not -len(self) <= i < len(self):  # ends iteration (and np.asarray) instead of looping forever
                raise IndexError(f"prompt {i} of {len(self)}")
            i = len(self) + i if i < 0 else i
        s = slice(i, i + 1) if isinstance(i, (int, np.integer)) else i

        def take(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
            return None if a is None else a[s]

        return Prompts(take(self.boxes), take(self.point_coords), take(self.point_labels))


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight box (4,) float [xmin, ymin, xmax, ymax] (inclusive pixel indices) of a (H, W) mask.

    A mask one pixel wide (or tall) gives x0 == x1 (or y0 == y1), as in SAM; `fix_boxes` widens it.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        raise ValueError("cannot take the box of an empty mask")
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def fix_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Make (n, 4) boxes valid inside an image of size (H, W).

    Corners are sorted (a negative width flips the box), clipped to [0, W - 1] x [0, H - 1]
    (inclusive pixel indices), and a side shorter than 1 px is set to exactly 1 px around its
    centre, the centre first moved into [0.5, size - 1.5] so that the widened box stays in the
    image. A box already valid is returned unchanged. A 1 px side needs two pixel indices, so
    images smaller than 2 px in either dimension raise ValueError.
    """
    h, w = image_size
    if h < 2 or w < 2:
        raise ValueError(f"image size must be >= 2 px in each dimension, got {image_size}")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.empty_like(b)
    for axis, size in ((0, w), (1, h)):
        lo = np.clip(np.minimum(b[:, axis], b[:, axis + 2]), 0, size - 1)
        hi = np.clip(np.maximum(b[:, axis], b[:, axis + 2]), 0, size - 1)
        thin = hi - lo < 1
        # Snap the new low side to a multiple of 2**-20 so that low + 1 is exact in float64.
        start = np.round((np.clip((lo + hi) / 2, 0.5, size - 1.5) - 0.5) * 2**20) / 2**20
        out[:, axis] = np.where(thin, start, lo)
        out[:, axis + 2] = np.where(thin, start + 1.0, hi)
    return out


def noisy_boxes(
    box: np.ndarray, scale: float, n: int, rng: np.random.Generator, image_size: tuple[int, int]
) -> np.ndarray:
    """HQ-SAM box noise: (4,) box -> (n, 4) boxes.

    (cx, cy, w, h) += U(-1, 1) * scale * (w/2, h/2, w, h), one draw per component, with
    w = x1 - x0, h = y1 - y0 of the box as given; back to corners, then `fix_boxes` (clip to
    [0, W - 1] x [0, H - 1], sides >= 1 px). scale = 0 gives exactly the box when it is valid.
    """
    return box_from_noise(box, box_noise_draws(rng, n), scale, image_size)


def box_noise_draws(rng: np.random.Generator, n: int) -> np.ndarray:
    """The draws u (n, 4), U(-1, 1) each, that `noisy_boxes` turns into boxes."""
    return rng.uniform(-1.0, 1.0, size=(n, 4))


def box_from_noise(box: np.ndarray, u: np.ndarray, scale: float, image_size: tuple[int, int]) -> np.ndarray:
    """The boxes (n, 4) that `noisy_boxes` makes from its draws u (n, 4) in [-1, 1]: noisy-box@S's
    reach is exactly u in [-1, 1]^4 (each side then moves at most S x the box's width / height)."""
    box = np.asarray(box, dtype=np.float64).reshape(4)
    w, h = box[2] - box[0], box[3] - box[1]
    d = np.asarray(u, dtype=np.float64).reshape(-1, 4) * scale * np.array([w / 2, h / 2, w, h])
    # Shift each corner directly (x0 + dcx - dw/2, ...) so that scale = 0 is exact in floats.
    half_dw, half_dh = d[:, 2] / 2, d[:, 3] / 2
    out = np.stack(
        [
            box[0] + d[:, 0] - half_dw,
            box[1] + d[:, 1] - half_dh,
            box[2] + d[:, 0] + half_dw,
            box[3] + d[:, 1] + half_dh,
        ],
        axis=1,
    )
    return fix_boxes(out, image_size)


def noisy_points(
    points: np.ndarray, scale: float, extent: np.ndarray, n: int, rng: np.random.Generator,
    image_size: tuple[int, int],
) -> np.ndarray:
    """Click noise in the spirit of HQ-SAM's box noise: (k, 2) clicks -> (n, k, 2).

    Each click moves by U(-1, 1) * scale * extent / 2 along x and y, extent = (L_x, L_y) the
    object's size (e.g. its box's width and height), then is clipped to [0, W - 1] x [0, H - 1].
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    h, w = image_size
    shift = rng.uniform(-1.0, 1.0, size=(n, len(points), 2)) * scale * np.asarray(extent, float) / 2
    return np.clip(points[None] + shift, 0, [w - 1, h - 1])


def sam_jitter_boxes(
    box: np.ndarray,
    n: int,
    rng: np.random.Generator,
    image_size: tuple[int, int],
    frac: float = 0.1,
    max_px: float = 20.0,
) -> np.ndarray:
    """SAM's training box jitter: (4,) box -> (n, 4) boxes.

    SAM paper: "noise with standard deviation equal to 10% of the box sidelength, up to a
    maximum of 20 pixels". Here each of the 4 coordinates independently moves by
    N(0, frac * side), side = box width for x0, x1 and height for y0, y1, and each move is
    clamped to [-max_px, max_px]; then `fix_boxes`.
    """
    box = np.asarray(box, dtype=np.float64).reshape(4)
    w, h = box[2] - box[0], box[3] - box[1]
    std = frac * np.array([w, h, w, h])
    d = np.clip(rng.standard_normal((n, 4)) * std, -max_px, max_px)
    return fix_boxes(box + d, image_size)


def sample_points(mask: np.ndarray, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n sets of k foreground clicks (n, k, 2) (x, y) = (col, row), uniform over the mask.

    Coordinates are integer-valued floats: mask[int(y), int(x)] is True for every click.

    Within a set the k pixels are distinct when the mask has >= k pixels (else drawn with
    replacement); sets are independent. Labels: `point_labels(n, k)`.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        raise ValueError("cannot sample points from an empty mask")
    distinct = len(idx) >= k
    picks = np.zeros((n, k), dtype=np.int64)
    for i in range(n):
        picks[i] = rng.choice(len(idx), size=k, replace=not distinct)
    rows, cols = np.divmod(idx[picks], mask.shape[1])
    return np.stack([cols, rows], axis=-1).astype(np.float64)


def part_points(mask: np.ndarray, k: int, rng: np.random.Generator, share: float = 0.25) -> np.ndarray:
    """One set of k foreground clicks (1, k, 2) on one part of the object: an anchor pixel drawn
    uniformly, then k distinct clicks among the `share` of the object's pixels nearest to it.
    The ambiguous clicks of Stable-SAM's RTS (a click on a part, supervised with the whole object)."""
    idx = np.flatnonzero(np.asarray(mask))
    if len(idx) == 0:
        raise ValueError("cannot sample points from an empty mask")
    rows, cols = np.divmod(idx, mask.shape[1])
    a = rng.integers(len(idx))
    near = np.argsort((rows - rows[a]) ** 2 + (cols - cols[a]) ** 2, kind="stable")
    pool = near[: max(k, int(np.ceil(share * len(idx))))]
    picks = rng.choice(pool, size=k, replace=len(pool) < k)
    return np.stack([cols[picks], rows[picks]], axis=-1)[None].astype(np.float64)


def point_labels(n: int, k: int) -> np.ndarray:
    """(n, k) int64 labels, all 1 (foreground)."""
    return np.ones((n, k), dtype=np.int64)


def generate(prompt: Union[str, PromptType], mask: np.ndarray, n: int, rng: np.random.Generator) -> Prompts:
    """Prompts for one (H, W) mask: gt-box -> exactly 1 box; noisy-box -> n boxes; points@k -> n sets."""
    prompt = parse_prompt(prompt)
    if prompt.searched:
        raise ValueError(f"{prompt.name} depends on the model: stablesam.prompts.adversarial.search_prompt finds it")
    mask = np.asarray(mask)
    if prompt.kind == GT_BOX:
        return Prompts(boxes=mask_to_box(mask)[None])
    if prompt.kind == NOISY_BOX:
        return Prompts(boxes=noisy_boxes(mask_to_box(mask), prompt.value, n, rng, mask.shape[:2]))
    coords = sample_points(mask, prompt.value, n, rng)
    return Prompts(point_coords=coords, point_labels=point_labels(n, prompt.value))


def _key_bytes(key: Union[int, str]) -> bytes:
    if isinstance(key, str):
        data = key.encode("utf-8")
        return b"s" + len(data).to_bytes(8, "little") + data
    try:
        value = int(key.__index__())
    except (AttributeError, TypeError):
        raise TypeError(f"rng keys must be ints or strings, got {type(key).__name__}") from None
    data = str(value).encode("ascii")
    return b"i" + len(data).to_bytes(8, "little") + data


def object_rng(seed: int, *keys: Union[int, str]) -> np.random.Generator:
    """Generator determined by (seed, *keys) alone, e.g. object_rng(0, "davis345", "007", "points@3").

    The keys are serialised unambiguously (type tag + length + value) and hashed with
    BLAKE2b (stable across runs and platforms, unlike hash()) into the SeedSequence entropy.
    """
    digest = hashlib.blake2b(_key_bytes(seed) + b"".join(map(_key_bytes, keys)), digest_size=16)
    return np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest.digest(), "little")))
