"""Hugging Face `transformers` (`SamModel`, `Sam2Model`, and the model types other families add):
its backend and Stable predictor."""

from .backend import HfBackend  # noqa: F401  (registers the family)
