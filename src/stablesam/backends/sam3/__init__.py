"""SAM 3 (Meta's `sam3`): its backend (the interactive "SAM 1 task" path of the image model, or
its tracker alone), Stable predictor and automatic-mask generator. transformers'
`Sam3TrackerModel` is served by the hf family (`hf:DIR`), declared here (`Sam3Backend.hf_models`)."""

from .backend import Sam3Backend  # noqa: F401  (registers the family)
