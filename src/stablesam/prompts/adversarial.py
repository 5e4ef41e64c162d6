"""Worst-case prompts: the box (or click) that minimises, or maximises, a model's mask IoU.

BREPS's IoU-Min / IoU-Base / IoU-Max for boxes, and TETRIS's worst click, found by a
deterministic search with a fixed budget of decoder passes (one pass = one prompt decoded):

- `adv-box@R` / `best-box@R`: over noisy-box@R's reach, the boxes `box_from_noise(gt_box, u,
  R)` for u in [-1, 1]^4 ((cx, cy, w, h) moved by at most R x (w/2, h/2, w, h), clipped to the
  image; so each side moves at most R x the box's width / height). Starts: u = 0 (the
  ground-truth box: IoU-Base) and random u; then a pattern search in u.
- `adv-point`: over the object's pixels more than `CLICK_MARGIN` px from its boundary (distance
  to the nearest pixel outside the object; the image border is not a boundary). Starts: the
  most central of them (IoU-Base for clicks) and a farthest-point spread of the others; then a
  pattern search in pixels.

Every round is one batched call of the objective, whose values the search only compares, so
the same code serves eval (IoU against the ground truth), the demo and training. The random
starts come from the given Generator alone: same seed, same prompts tried, same result.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .generation import PromptType, box_from_noise, mask_to_box

DEFAULT_BUDGET = 48  # decoder passes per object and searched prompt type (`eval --adv-budget`)
CLICK_MARGIN = 5.0  # px: adv-point clicks lie farther than this from the object's boundary
MIN_BOX_SIDE = 2.0  # px: adv-/best-box need a ground-truth box at least this wide and tall
START_SHARE = 3  # a third of the budget goes to the starts (boxes), a half (clicks)
BOX_STEP = 1.0  # the first pattern step in u (the reach is [-1, 1]^4)
BOX_DIRECTIONS = np.eye(4)
SUBSET = 4096  # adv-point: farthest-point starts are spread over at most this many pixels

# candidates (n, d) -> (values (n,), one extra per candidate, e.g. its mask)
Objective = Callable[[np.ndarray], Tuple[np.ndarray, Sequence[Any]]]


@dataclass
class SearchResult:
    """What a search tried, in order, and which was best."""

    tried: np.ndarray  # (n, 4) boxes XYXY or (n, 2) clicks (x, y), n <= budget
    points: np.ndarray  # (n, d) the same in the search's space: u in [-1, 1]^4 (boxes), or the clicks
    values: np.ndarray  # (n,) the objective of each, e.g. mask IoU
    index: int  # the best (the lowest value, or the highest when maximising); earliest on ties
    extra: Any  # the objective's extra for the best candidate (e.g. its predicted mask)
    rounds: int  # objective calls (batched decoder calls)

    @property
    def best(self) -> np.ndarray:
        return self.tried[self.index]

    @property
    def value(self) -> float:
        return float(self.values[self.index])

    @property
    def base(self) -> float:
        """The value of the first start: the ground-truth box, or the most central click."""
        return float(self.values[0])

    @property
    def passes(self) -> int:
        return len(self.tried)


def key(p: np.ndarray) -> tuple:
    return tuple(np.round(p, 9).tolist())


class _Search:
    """Budgeted pattern search over points of a space given by `project` (a proposed point ->
    the admissible point it stands for, or None). Minimises; values are compared only."""

    def __init__(self, objective: Objective, project: Callable, budget: int, sign: float):
        self.objective, self.project, self.budget, self.sign = objective, project, budget, sign
        self.points: List[np.ndarray] = []
        self.values: List[float] = []
        self.seen: Dict[tuple, float] = {}  # key of a tried point -> its (signed) value
        self.best, self.extra, self.rounds = -1, None, 0

    def left(self) -> int:
        return self.budget - len(self.points)

    def fresh(self, proposals) -> List[np.ndarray]:
        """Admissible, not yet tried and not repeated, within the budget left, in order."""
        out, keys = [], set()
        for p in proposals:
            q = self.project(np.asarray(p, dtype=np.float64))
            if q is None:
                continue
            k = key(q)
            if k not in self.seen and k not in keys:
                keys.add(k)
                out.append(q)
        return out[: self.left()]

    def run(self, points: List[np.ndarray]) -> None:
        """Evaluate points in one objective call (none: no call)."""
        if not points:
            return
        values, extras = self.objective(np.stack(points))
        self.rounds += 1
        for p, v, e in zip(points, np.asarray(values, dtype=np.float64), extras):
            self.seen[key(p)] = self.sign * float(v)
            self.points.append(p)
            self.values.append(float(v))
            if self.best < 0 or self.sign * v < self.sign * self.values[self.best]:
                self.best, self.extra = len(self.points) - 1, e

    def climb(self, start: int, step: float, min_step: float, directions: np.ndarray) -> None:
        """Pattern search from tried point `start`. Each round (one objective call) tries
        x +- step along each direction, plus the last successful move repeated and the minimum
        of a parabola fitted along each direction (to x and its two neighbours there), all
        directions at once; x moves to the best if it improves on x, else the step halves.
        Stops below min_step or when the budget is spent."""
        x, fx, extra = self.points[start], self.sign * self.values[start], []
        while self.left() > 0 and step >= min_step:
            first = len(self.points)
            self.run(self.fresh(extra + [x + s * step * d for d in directions for s in (1.0, -1.0)]))
            model = x + sum(self.parabola_step(x, fx, step, d) * d for d in directions)
            better = sorted((i for i in range(first, len(self.points)) if self.sign * self.values[i] < fx),
                            key=lambda i: (self.sign * self.values[i], i))
            if not better:
                step, extra = step / 2, [model]
                continue
            target = self.points[better[0]]
            extra = [model, target + (target - x)]
            x, fx = target, self.sign * self.values[better[0]]

    def parabola_step(self, x: np.ndarray, fx: float, step: float, d: np.ndarray) -> float:
        """Along d from x: the minimum of the parabola through x and the tried points x + t d
        (t = +-step, as projected), within twice the step; 0 when they are not both known."""
        known = []
        for s in (1.0, -1.0):
            q = self.project(x + s * step * d)
            if q is None or key(q) not in self.seen:
                return 0.0
            t = float(np.dot(q - x, d) / np.dot(d, d))
            if abs(t) < 1e-12 or not np.allclose(q, x + t * d):
                return 0.0  # clipped off the line
            known.append((t, self.seen[key(q)]))
        (t1, f1), (t2, f2) = known
        # f(t) = a t^2 + b t + fx through (t1, f1), (t2, f2)
        a = ((f1 - fx) / t1 - (f2 - fx) / t2) / (t1 - t2)
        b = (f1 - fx) / t1 - a * t1
        if a > 1e-15:  # convex: its vertex
            return float(np.clip(-b / (2 * a), min(t1, t2) * 2, max(t1, t2) * 2))
        if min(f1, f2) >= fx:
            return 0.0
        return 2 * (t1 if f1 < f2 else t2)  # falling on one side at least: twice as far that way

    def result(self, to_candidate: Callable) -> SearchResult:
        tried = np.stack([to_candidate(p) for p in self.points])
        return SearchResult(tried, np.stack(self.points), np.array(self.values), self.best, self.extra, self.rounds)


def climb_all(search: _Search, step: float, min_step: float, directions: np.ndarray) -> None:
    """Climb from the best start; when that converges with budget left, from the next best
    start, and so on (budget left after every start has converged stays unspent)."""
    n_starts = len(search.points)
    order = sorted(range(n_starts), key=lambda i: (search.sign * search.values[i], i))
    for start in order:
        if search.left() <= 0:
            return
        search.climb(start, step, min_step, directions)


def search_box(objective: Objective, box: np.ndarray, scale: float, image_size: Tuple[int, int],
               budget: int, rng: np.random.Generator, maximise: bool = False,
               starts: Optional[np.ndarray] = None) -> SearchResult:
    """The box within noisy-box@scale's reach of `box` (4,) that minimises (maximises)
    `objective` (boxes (n, 4) -> values), in at most `budget` evaluations. The first one tried
    is `box` itself (u = 0, one objective call), then the random starts in one call: `starts`
    (m, 4) u in [-1, 1]^4 when given (e.g. `noisy_boxes`' draws), else a third of the budget
    drawn from `rng`."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")

    def boxes(u: np.ndarray) -> np.ndarray:
        return box_from_noise(box, u, scale, image_size)

    def on_boxes(u: np.ndarray):
        return objective(boxes(u))

    search = _Search(on_boxes, lambda u: np.clip(u, -1.0, 1.0), budget, -1.0 if maximise else 1.0)
    if starts is None:
        n_starts = max(1, min(budget, -(-budget // START_SHARE)))
        starts = rng.uniform(-1.0, 1.0, size=(n_starts - 1, 4))
    search.run(search.fresh([np.zeros(4)]))
    search.run(search.fresh(np.asarray(starts, dtype=np.float64).reshape(-1, 4)))
    climb_all(search, step=BOX_STEP, min_step=1 / 32, directions=BOX_DIRECTIONS)
    return search.result(lambda u: boxes(u)[0])


def click_space(mask: np.ndarray, margin: float = CLICK_MARGIN) -> np.ndarray:
    """(H, W) bool: object pixels farther than `margin` px from the nearest non-object pixel
    (exact Euclidean distance; pixels beyond the image border do not count as outside)."""
    mask = np.asarray(mask, dtype=bool)
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return mask & (dist > margin)


def search_click(objective: Objective, allowed: np.ndarray, budget: int, rng: np.random.Generator,
                 maximise: bool = False) -> Optional[SearchResult]:
    """The single click among the `allowed` (H, W) pixels that minimises (maximises)
    `objective` (clicks (n, 2) x, y -> values), in at most `budget` evaluations; None when no
    pixel is allowed. The first one tried is the most central allowed pixel (the farthest from
    the allowed region's edge, the image border counting as edge; first in raster order on ties)."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    allowed = np.asarray(allowed, dtype=bool)
    rows, cols = np.nonzero(allowed)
    if not len(rows):
        return None
    h, w = allowed.shape

    def project(p: np.ndarray) -> Optional[np.ndarray]:
        x, y = int(np.round(p[0])), int(np.round(p[1]))
        return np.array([x, y], np.float64) if 0 <= x < w and 0 <= y < h and allowed[y, x] else None

    search = _Search(objective, project, budget, -1.0 if maximise else 1.0)
    n_starts = max(1, min(budget, -(-budget // 2), len(rows)))
    search.run(search.fresh(spread_starts(allowed, rows, cols, n_starts, rng)))
    spacing = np.sqrt(len(rows) / n_starts)
    climb_all(search, step=max(1.0, spacing / 2), min_step=1.0,
              directions=np.array([[1, 0], [0, 1], [1, 1], [1, -1]], np.float64))
    return search.result(lambda p: p)


def spread_starts(allowed: np.ndarray, rows: np.ndarray, cols: np.ndarray, n: int,
                  rng: np.random.Generator) -> List[np.ndarray]:
    """n clicks (x, y): the most central allowed pixel, then farthest-point sampling over a
    random subset of at most SUBSET allowed pixels."""
    dist = cv2.distanceTransform(np.pad(allowed, 1).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    centre = int(np.argmax(dist[rows, cols]))
    pool = rng.permutation(len(rows))[:SUBSET]
    pts = np.stack([cols[pool], rows[pool]], axis=1).astype(np.float64)
    chosen = [np.array([cols[centre], rows[centre]], np.float64)]
    gap = np.linalg.norm(pts - chosen[0], axis=1)
    while len(chosen) < n and gap.max() > 0:
        j = int(np.argmax(gap))
        chosen.append(pts[j])
        gap = np.minimum(gap, np.linalg.norm(pts - pts[j], axis=1))
    return chosen


def search_prompt(prompt: PromptType, mask: np.ndarray, objective: Objective, budget: int,
                  rng: np.random.Generator, allowed: Optional[np.ndarray] = None,
                  starts: Optional[np.ndarray] = None) -> Optional[SearchResult]:
    """The search a searched prompt type names, on an object's (H, W) mask; None when the object
    is too small (no allowed click, or a ground-truth box under MIN_BOX_SIDE px on a side).
    `allowed`: adv-point's `click_space(mask)` when already computed; `starts`: the box
    searches' random starts (see `search_box`)."""
    if prompt.kind == "adv-point":
        return search_click(objective, click_space(mask) if allowed is None else allowed, budget, rng)
    box = mask_to_box(mask)
    if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_SIDE:
        return None
    return search_box(objective, box, prompt.value, mask.shape[:2], budget, rng,
                      maximise=prompt.kind == "best-box", starts=starts)
