"""HQ-SAM (`segment-anything-hq`): its backend, Stable predictor and automatic-mask generator."""

from .backend import HqBackend  # noqa: F401  (registers the family)
