"""The demo's "worst box": for each model, the box within the wobble noise of the drawn box
whose mask agrees least with the other model's mask on the drawn box (`stablesam.prompts.adversarial`'s
box search, the benchmark's adv-box with the other model's answer standing in for the ground
truth, which the demo does not have)."""

import math
from typing import Any, Dict

import numpy as np

from ..prompts.adversarial import search_box
from ..models.cache import Embedding
from ..evaluation.metrics import mask_iou
from ..prompts.generation import object_rng
from .engine import WOBBLE_PIXELS, DemoEngine, png_data_url
from .session import StoredImage

DEMO_BUDGET = 24  # decoder passes per model (2 x 24 passes: about a second for the tiny SAM on a CPU)
MAX_BUDGET = 96
MODELS = (("sam", False), ("stable_sam", True))


def worst_boxes(engine: DemoEngine, item: StoredImage, box: np.ndarray, scale: float, budget: int,
                seed: int) -> Dict[str, Any]:
    """Each model's worst box near `box` (4,) XYXY (noisy-box@scale's reach), found in `budget`
    decoder passes. Per model: the box, its mask (a 0/255 PNG data URL, at the wobble's reduced
    size for big images), `iou` = IoU of that mask with the other model's mask on the drawn box,
    and `iou_drawn` = the same for this model's own mask on the drawn box."""
    shrink = min(1.0, math.sqrt(WOBBLE_PIXELS / (item.width * item.height)))
    size = (max(2, round(item.height * shrink)), max(2, round(item.width * shrink)))
    f = np.array([size[1] / item.width, size[0] / item.height] * 2)
    embedding = Embedding(item.embedding.features, item.embedding.input_size, size, item.embedding.extras)
    drawn = np.asarray(box, dtype=np.float64) * f
    out: Dict[str, Any] = {"scale": scale, "seed": seed, "budget": budget}
    with engine.lock:
        reference = {key: engine._decode(embedding, drawn[None], None, None, plugins)[0][0] for key, plugins in MODELS}
        for key, plugins in MODELS:
            other = reference["stable_sam" if key == "sam" else "sam"]

            def objective(boxes: np.ndarray, plugins: bool = plugins, other: np.ndarray = other):
                masks = engine._decode(embedding, boxes, None, None, plugins)[0]
                return np.array([mask_iou(m, other) for m in masks]), list(masks)

            found = search_box(objective, drawn, scale, size, budget, object_rng(seed, item.id, "worst-box"))
            out[key] = {"box": np.round(found.best / f, 1).tolist(), "iou": round(found.value, 4),
                        "iou_drawn": round(found.base, 4), "passes": found.passes,
                        "mask": png_data_url(found.extra.astype(np.uint8) * 255)}
    return out
