"""Automatic masks ("segment everything") for HQ-SAM and SAM 2.1: each package's own generator
on the Stable-SAM decoder (random-init models, as in test_hq / test_sam2)."""

import numpy as np
import pytest
import torch

from conftest import perturb_plugins
from stablesam import StableSam, StableSamAutomaticMaskGenerator
from stablesam.backends import get_backend
from stablesam.models.cache import EmbeddingCache
from helpers import LOOSE, assert_same_records, assert_same_types


def sam2_model():
    pytest.importorskip("sam2", reason="needs the [sam2] extra")
    torch.manual_seed(0)
    return get_backend("sam2").build("sam2.1_hiera_t", 512)


def hq_model():
    pytest.importorskip("segment_anything_hq", reason="needs the [hq] extra")
    torch.manual_seed(0)
    return get_backend("hq").build("hq_vit_tiny").eval()


def family_generator(family, sam, **options):
    """The package's own generator on the plain model."""
    if family == "sam2":
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        from stablesam.backends.sam2.predictor import fit_feature_sizes

        gen = SAM2AutomaticMaskGenerator(sam, **options)
        fit_feature_sizes(gen.predictor)  # the 512 px test model
        return gen
    from segment_anything_hq import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(sam, **options)


@pytest.fixture(scope="module", params=["sam2", "hq"])
def family_model(request):
    sam = sam2_model() if request.param == "sam2" else hq_model()
    model = StableSam(sam).eval()
    perturb_plugins(model)
    return request.param, model


@pytest.mark.slow
def test_plugins_off_equals_the_family_generator_and_on_changes_it(family_model, image):
    family, model = family_model
    options = dict(LOOSE, points_per_side=4)
    cache = EmbeddingCache(None)
    model.plugins_enabled = False
    gen = StableSamAutomaticMaskGenerator(model, embedding_cache=cache, **options)
    assert type(gen).__name__ == {"sam2": "StableSam2AutomaticMaskGenerator", "hq": "StableHqAutomaticMaskGenerator"}[family]
    with torch.no_grad():
        plain = gen.generate(image)
        theirs = family_generator(family, model.sam, **options).generate(image)
    assert_same_records(plain, theirs)
    model.plugins_enabled = True
    model.last_alpha = None
    with torch.no_grad():
        stable = StableSamAutomaticMaskGenerator(model, embedding_cache=cache, **options).generate(image)
    assert cache.encoder_calls == 1  # both generators read one cached embedding
    assert model.last_alpha is not None
    assert_same_types(stable, theirs)
    assert [r["predicted_iou"] for r in stable] != [r["predicted_iou"] for r in plain]


def test_transformers_models_have_no_generator(tmp_path):
    pytest.importorskip("transformers", reason="needs the [hf] extra")
    from helpers import small_sam_config
    from transformers import SamModel

    model = StableSam(SamModel(small_sam_config()))
    with pytest.raises(TypeError, match="not available for Hugging Face"):
        StableSamAutomaticMaskGenerator(model)


@pytest.mark.slow
def test_segment_everything_with_a_sam2_spec(tmp_path, capsys, image):
    from PIL import Image

    from stablesam.cli import main
    from helpers import family_files

    _, stable = family_files(tmp_path, "sam2")
    path = tmp_path / "im.png"
    Image.fromarray(image).save(path)
    rc = main(["segment", str(path), "--everything", "--points-per-side", "3", "--pred-iou-thresh", "0",
               "--stability-thresh", "0", "--model", stable, "--out", str(tmp_path / "masks"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    pngs = list((tmp_path / "masks").glob("mask_*.png"))
    assert pngs and (tmp_path / "masks" / "masks.json").is_file()
