"""The model registry: each SAM family's backend declares its SPEC heads, checkpoint signature,
extra and help lines; the SPEC syntax, checkpoint detection and `stablesam info` read them."""

import pytest
import torch

import stablesam.backends  # noqa: F401  (registers every family)
from stablesam.modeling import registry
from stablesam.modeling.family import Backend
from stablesam.models.spec import SAM_ACCEPTED

# The accepted-SPEC text as releases before the registry wrote it by hand (plus SAM 3's line and
# Sam3TrackerModel in the hf line, and the named embedded plugins): the registry's lines must
# rebuild it exactly.
HISTORICAL_ACCEPTED = """accepted model SPECs:
  vit_b:PATH, vit_l:PATH, vit_h:PATH   SAM from an official checkpoint (plugins off)
  sam:PATH                             SAM from a stablesam SAM file (architecture + weights)
  hq_vit_b|l|h|tiny:PATH               HQ-SAM from an official checkpoint       (pip install "stable-segment-anything[hq]")
  sam2.1_hiera_t|s|b+|l:PATH           SAM 2.1 from an official checkpoint      (pip install "stable-segment-anything[sam2]")
  sam2_hiera_t|s|b+|l:PATH             SAM 2 from an official checkpoint        (pip install "stable-segment-anything[sam2]")
  hf:DIR                               transformers SamModel/Sam2Model/Sam3TrackerModel folder (pip install "stable-segment-anything[hf]")
  sam3:PATH                            SAM 3 (interactive path) from sam3.pt   (pip install "stable-segment-anything[sam3]")
  tiny-sam, tiny-stable-sam            the embedded base model / the embedded Stable-SAM
  tiny-stable-sam-strong               loose boxes around one main object: a stronger plugin that falls back to SAM where SAM's IoU head prefers SAM's mask, and on clicks alone
  tiny-stable-sam-single               photos of one main object (a product, a pet, a salient object): a loose box is decoded again with the box of its own mask; not for cluttered scenes, where it costs several points
  SPEC+plugin=PATH                     Stable-SAM: that SAM with the plugin file at PATH
  SPEC+decoder=PATH                    that SAM with decoder-tuned weights (DT baseline)"""


def test_every_family_declares_what_the_package_asks_of_it():
    found = registry.families()
    assert [b.family for b in found] == ["sam1", "hq", "sam2", "hf", "sam3"]
    for backend in found:
        assert backend.title and backend.requires and backend.variants and backend.spec_help
        assert (backend.extra is None) == (backend.family == "sam1")  # only SAM 1 is a base dependency
        for head in backend.variants:
            assert registry.backend_for_head(head) is backend
    assert registry.backend_for_head("grabcut") is None and registry.backend_for_head("sam") is None
    assert SAM_ACCEPTED == HISTORICAL_ACCEPTED


@pytest.mark.parametrize("keys,family", [
    (["sam_mask_decoder.x", "image_encoder.trunk.x"], "sam2"),
    (["mask_decoder.hf_token.weight", "mask_decoder.x"], "hq"),
    (["vision_encoder.x", "mask_decoder.transformer.layers.0.layer_norm1.weight"], "hf"),
    (["mask_decoder.x", "image_encoder.x"], "sam1"),
    (["tracker.sam_mask_decoder.x", "detector.backbone.x"], "sam3"),  # sam3.pt's layout
    (["something.else"], None),
])
def test_checkpoint_signatures(keys, family):
    assert registry.checkpoint_family({k: torch.zeros(1) for k in keys}) == family


def test_a_new_family_is_one_registered_class():
    class ToyBackend(Backend):
        family, title, extra, requires = "toy", "Toy SAM", "toy", ("toy_sam_package",)
        variants = {"toy_b": None}
        spec_help = ("  toy_b:PATH                           Toy SAM",)

        def checkpoint_signature(self, state):
            return "toy_decoder.x" in state

    try:
        registry.register_family(ToyBackend)
        assert registry.backend_for_head("toy_b").title == "Toy SAM"
        assert registry.accepted_lines()[-1] == ToyBackend.spec_help[0]
        assert registry.checkpoint_family({"toy_decoder.x": 0}) == "toy"
        assert not registry.installed("toy")
        with pytest.raises(ImportError, match=r'pip install "stable-segment-anything\[toy\]"'):
            registry.require("toy")
        with pytest.raises(ValueError, match="new name"):
            registry.register_family(ToyBackend)
    finally:
        registry._FAMILIES.pop("toy", None)
