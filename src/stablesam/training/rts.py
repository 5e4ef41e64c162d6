"""Robust Training Strategy: a mixture of prompt qualities for every training object.

The default mixture trains on what Stable-SAM is for (noisy boxes, sparse clicks) while
keeping ground-truth boxes in the mix so that good prompts stay good:
  gt-box 0.1, noisy-box 0.6 (scale ~ U(0, 0.5]), points 0.2 (1..5 clicks), box+points 0.1 (a
  noisy box plus 1..5 clicks), half of the click sets drawn on one part of the object (the
  paper's ambiguous clicks), and interactive 0.15 (corrective-click sessions of 4 clicks), as
  rates that are normalised.
Whatever the prompt, the target is the whole-object mask (a click on a part is supervised
with the whole object). The plugin study (docs/results/embedded_studies.md) chose it
("rts_combo"): against release 0.1's gt-box 0.2 / noisy-box 0.4 / points 0.25 / box+points 0.15
without part clicks it keeps ground-truth boxes better and steadies single clicks most. Replacing
half of its noisy boxes by adv-box lost under leave-one-dataset-out (docs/results/lodo.md).

The `interactive` component is SAM's own interactive training
(`stablesam.training.interactive`): a jittered box or one click, then corrective clicks from the error
region with the previous logits as `mask_input`, a loss on every round.

The `adv-box` component (off by default) trains on hard boxes: for each such sample a noise
scale S ~ U(0, max_noise] is drawn and the box within noisy-box@S's reach that the model being
trained segments worst is mined online by a short gradient-free search (`stablesam.prompts.adversarial`,
`adv_budget` decoder passes, no gradient), then trained on like any other box.
"""

import math
from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import numpy as np

from ..prompts.generation import Prompts, mask_to_box, noisy_boxes, part_points, point_labels, sample_points
from ..prompts.kinds import ADV_BOX, INTERACTIVE, RTS_KINDS
from .interactive import first_prompt

KINDS = RTS_KINDS
OPTIONAL_KINDS = (INTERACTIVE, ADV_BOX)  # drawn only when their rate is > 0


@dataclass(frozen=True)
class RtsMixture:
    gt_box: float = 0.1
    noisy_box: float = 0.6
    points: float = 0.2
    box_points: float = 0.1
    max_noise: float = 0.5  # noisy-box scale drawn from U(0, max_noise]
    max_points: int = 5  # clicks drawn from 1..max_points
    part_clicks: float = 0.5  # share of click sets drawn on one part of the object (`part_points`)
    interactive: float = 0.15  # SAM's interactive simulation (`stablesam.training.interactive`)
    interactive_clicks: int = 4  # corrective clicks per simulated session (plus two rounds without)
    deepest_clicks: float = 0.5  # share of corrective clicks at the error's deepest point (else uniform)
    adv_box: float = 0.0  # hard boxes mined online against the model being trained
    adv_budget: int = 8  # decoder passes (no gradient) spent mining one adv-box sample

    def __post_init__(self) -> None:
        rates = self.rates()
        raw = (self.gt_box, self.noisy_box, self.points, self.box_points, self.interactive, self.adv_box,
               self.max_noise)
        if not all(math.isfinite(v) for v in raw):
            raise ValueError(f"RTS rates and max_noise must be finite numbers, got {raw}")
        if any(r < 0 for r in rates.values()) or sum(rates.values()) <= 0:
            raise ValueError(f"RTS rates must be >= 0 with a positive sum, got {rates}")
        if self.max_noise < 0 or self.max_points < 1:
            raise ValueError("RTS needs max_noise >= 0 and max_points >= 1")
        if not (math.isfinite(self.part_clicks) and 0 <= self.part_clicks <= 1):
            raise ValueError(f"RTS part_clicks must be in [0, 1], got {self.part_clicks}")
        if not (math.isfinite(self.deepest_clicks) and 0 <= self.deepest_clicks <= 1):
            raise ValueError(f"RTS deepest_clicks must be in [0, 1], got {self.deepest_clicks}")
        from ..limits import INTERACTIVE_CLICKS, NOISE_SCALE, RTS_ADV_BUDGET, RTS_MAX_POINTS

        NOISE_SCALE.check(self.max_noise, "RTS max-noise")
        RTS_MAX_POINTS.check(self.max_points, "RTS max-points")
        INTERACTIVE_CLICKS.check(self.interactive_clicks, "RTS interactive-clicks")
        RTS_ADV_BUDGET.check(self.adv_budget, "RTS adv-budget")

    @classmethod
    def saved_values(cls, values: Dict) -> Dict:
        """Every setting of a mixture dict saved by some release: those it predates read as
        `MIXTURE_ABSENT_MEANS`, the rest of the missing as defaults."""
        return {**cls().to_dict(), **MIXTURE_ABSENT_MEANS, **values}

    def rates(self) -> Dict[str, float]:
        """Normalised rate of each prompt kind."""
        raw = dict(zip(KINDS, (self.gt_box, self.noisy_box, self.points, self.box_points, self.interactive,
                               self.adv_box)))
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()} if total > 0 else raw

    def to_dict(self) -> Dict:
        return asdict(self)

    def text(self, keys: Tuple[str, ...] = ("gt-box", "noisy-box", "adv-box", "points", "box+points", "part-clicks",
                                            "interactive", "interactive-clicks")) -> str:
        """The mixture as `parse` reads it, for the `keys` given: 'gt-box=0.1,noisy-box=0.6,...'."""
        names = {**dict(zip(KINDS, ("gt_box", "noisy_box", "points", "box_points", "interactive", "adv_box"))),
                 **{k: k.replace("-", "_") for k in ("max-noise", "max-points", "part-clicks", "interactive-clicks",
                                                     "deepest-clicks", "adv-budget")}}
        return ",".join(f"{k}={getattr(self, names[k]):g}" for k in keys)

    @classmethod
    def parse(cls, text: str) -> "RtsMixture":
        """'gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15,interactive=0.5,adv-box=0.2' (missing
        kinds get 0), plus optional 'max-noise=S', 'max-points=K', 'part-clicks=P',
        'interactive-clicks=N', 'deepest-clicks=D' and 'adv-budget=N' (defaults as above)."""
        names = dict(zip(KINDS, ("gt_box", "noisy_box", "points", "box_points", "interactive", "adv_box")))
        settings = {"max-noise": "max_noise", "max-points": "max_points", "part-clicks": "part_clicks",
                    "interactive-clicks": "interactive_clicks", "deepest-clicks": "deepest_clicks",
                    "adv-budget": "adv_budget"}
        values = {v: 0.0 for v in names.values()}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            if key not in names and key not in settings:
                raise ValueError(f"unknown RTS prompt kind {key!r}; accepted: {', '.join(KINDS + tuple(settings))}")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"bad value {value!r} for {key!r} in {text!r}") from None
            if key in ("max-points", "interactive-clicks", "adv-budget"):
                if not number.is_integer():
                    raise ValueError(f"{key} must be a whole number, got {value!r}")
                number = int(number)
            values[names.get(key) or settings[key]] = number
        return cls(**values)


# What a training config written before an option existed meant by leaving it out.
MIXTURE_ABSENT_MEANS: Dict[str, float] = {"part_clicks": 0.0, "interactive": 0.0, "adv_box": 0.0}

RELEASE_0_1 = RtsMixture(gt_box=0.2, noisy_box=0.4, points=0.25, box_points=0.15, part_clicks=0.0, interactive=0.0,
                         adv_box=0.0)
GT_BOX_ONLY = RtsMixture(gt_box=1.0, noisy_box=0.0, points=0.0, box_points=0.0, part_clicks=0.0, interactive=0.0,
                         adv_box=0.0)


def sample_rts_prompt(mask: np.ndarray, mixture: RtsMixture, rng: np.random.Generator) -> Tuple[str, Prompts]:
    """One training prompt for a (H, W) mask: (kind, Prompts with one prompt); for "interactive",
    the opening prompt of the simulated session; for "adv-box", the ground-truth box the mining
    starts from."""
    rates = mixture.rates()
    # An optional kind at rate 0 is left out of the draw: the same draws as before it existed.
    kinds = [k for k in KINDS if k not in OPTIONAL_KINDS or rates[k] > 0]
    kind = kinds[rng.choice(len(kinds), p=np.array([rates[k] for k in kinds]))]
    if kind == "interactive":
        return kind, first_prompt(mask, rng)
    box = mask_to_box(mask)
    if kind in ("gt-box", "adv-box"):
        return kind, Prompts(boxes=box[None])
    if kind in ("noisy-box", "box+points"):
        scale = mixture.max_noise * (1.0 - rng.random())  # U(0, max]
        box = noisy_boxes(box, scale, 1, rng, mask.shape[:2])
        if kind == "noisy-box":
            return kind, Prompts(boxes=box)
    k = int(rng.integers(1, mixture.max_points + 1))
    if mixture.part_clicks > 0 and rng.random() < mixture.part_clicks:  # no extra draw when off
        coords = part_points(mask, k, rng)
    else:
        coords = sample_points(mask, k, 1, rng)
    if kind == "points":
        return kind, Prompts(point_coords=coords, point_labels=point_labels(1, k))
    return kind, Prompts(boxes=box, point_coords=coords, point_labels=point_labels(1, k))
