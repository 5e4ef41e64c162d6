"""The SAM families, one subpackage each (`sam1`, `hq`, `sam2`, `hf`, `sam3`): a family's
backend (what the plugins need to know about its models, registered with
`stablesam.modeling.registry.register_family`), its Stable predictor and its automatic-mask
generator. What every family shares sits here: the reference Stable predictor (`predictor`),
the reference automatic-mask generator (`automatic`) and official checkpoint reading
(`official`); the backend interface, the registry and the frame geometry sit below, in
`stablesam.modeling`, because the plugins use them.

`backend_for(model)` finds a model's backend, `get_backend(name)` names one. Each family
imports its package only when used, so the base install needs only `segment_anything`; a
missing package raises `MissingExtra` naming the pip extra to install. Adding a family: see
docs/adding_a_family.md.
"""

from . import sam1, hq, sam2, hf, sam3  # noqa: F401, I001  (each registers its backend, in this order)
from ..modeling.family import Backend, Embedding, MissingExtra
from ..modeling.registry import backend_for, families, family_title, get_backend, require

__all__ = ["Backend", "Embedding", "MissingExtra", "backend_for", "families", "family_title", "get_backend", "require"]
