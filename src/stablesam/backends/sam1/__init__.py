"""SAM 1: Meta's `segment_anything` (ViT-B/L/H and the embedded tiny SAM). Its Stable predictor
and automatic-mask generator are the package's reference ones (`stablesam.backends.predictor`,
`stablesam.backends.automatic`), whose call shapes the other families follow."""

from .backend import Sam1Backend  # noqa: F401  (registers the family)
