"""SAM 2 / 2.1 (`sam2`): its backend, Stable predictor and automatic-mask generator."""

from .backend import Sam2Backend  # noqa: F401  (registers the family)
