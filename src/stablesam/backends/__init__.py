"""SAM families and the model registry: one backend module per family (`sam1`, `hq`, `sam2`,
`hf`), each registered with `registry.register_family`; `backend_for(model)` finds a model's,
`get_backend(name)` names one. Also here: what every family shares (`base`, the frame
`geometry`, `official` checkpoint loading, the Stable predictor and automatic-mask generator).

Each family imports its package only when used, so the base install needs only
`segment_anything`; a missing package raises `MissingExtra` naming the pip extra to install.
Adding a family = one module here that registers its backend, its extra and its tests.
"""

from . import sam1, hq, sam2, hf  # noqa: F401, I001  (each registers its backend, in this order)
from .base import Backend, Embedding, MissingExtra
from .registry import backend_for, families, family_title, get_backend, require

__all__ = ["Backend", "Embedding", "MissingExtra", "backend_for", "families", "family_title", "get_backend", "require"]
