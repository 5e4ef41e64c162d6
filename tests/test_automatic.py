"""StableSamAutomaticMaskGenerator and `stablesam segment --everything`."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from segment_anything import SamAutomaticMaskGenerator

from conftest import perturb_plugins
from stablesam import StableSam, StableSamAutomaticMaskGenerator
from stablesam.models.cache import EmbeddingCache
from stablesam.cli import main
from stablesam.backends.automatic import automatic_defaults
from stablesam.models.embedded import AUTOMATIC_DEFAULTS, EXAMPLE_IMAGE, EXAMPLES_DIR
from stablesam.data.images import load_image
from stablesam.models.spec import build_model, parse_model_spec
from stablesam.backends.predictor import CPU_MAX_BATCH
from helpers import LOOSE, assert_same_records, assert_same_types


@pytest.fixture
def small_model(small_sam):
    model = StableSam(small_sam).eval()
    perturb_plugins(model)
    return model


@pytest.mark.parametrize("options", [dict(LOOSE), dict(LOOSE, crop_n_layers=1, points_per_side=4)])
def test_plugins_off_equals_sam_generator(small_model, image, options):
    small_model.plugins_enabled = False
    ours = StableSamAutomaticMaskGenerator(small_model, **options).generate(image)
    theirs = SamAutomaticMaskGenerator(small_model.sam, **options).generate(image)
    assert_same_records(ours, theirs)


def test_plugins_on_same_fields_and_types(small_model, image):
    theirs = SamAutomaticMaskGenerator(small_model.sam, **LOOSE).generate(image)
    gen = StableSamAutomaticMaskGenerator(small_model, **LOOSE)
    ours = gen.generate(image)
    assert_same_types(ours, theirs)
    assert small_model.last_alpha is not None  # the decoder ran with the plugins
    assert [r["predicted_iou"] for r in ours] != [r["predicted_iou"] for r in theirs]


def small_example() -> np.ndarray:
    im = Image.open(EXAMPLE_IMAGE).convert("RGB")
    return np.array(im.resize((im.width // 3, im.height // 3)))


@pytest.mark.slow
def test_embedded_model():
    """The real embedded weights: plugins off is SAM's generator; the default plugin leaves the
    grid's clicks to SAM (selector "box"), so its masks are SAM's too; its weights without the
    selector change them."""
    image = small_example()
    model = build_model(parse_model_spec("tiny-stable-sam"), "cpu").eval()
    options = dict(points_per_side=8, pred_iou_thresh=0.3, stability_score_thresh=0.5)
    assert model.config.selector == "box"
    default = StableSamAutomaticMaskGenerator(model, **options).generate(image)
    model.plugins_enabled = False
    plain = StableSamAutomaticMaskGenerator(model, **options).generate(image)
    assert_same_records(plain, SamAutomaticMaskGenerator(model.sam, **options).generate(image))
    assert_same_records(default, plain)
    model.remove_hooks()
    acting = StableSam(model.sam, dataclasses.replace(model.config, selector="none"))
    acting.load_plugin_state_dict(model.plugin_state_dict())
    stable = StableSamAutomaticMaskGenerator(acting.eval(), **options).generate(image)
    assert_same_types(stable, plain)
    assert len(stable) != len(plain) or any(
        not np.array_equal(a["segmentation"], b["segmentation"]) for a, b in zip(stable, plain))


@pytest.fixture(scope="module")
def embedded_model():
    import stablesam

    return stablesam.load_model(device="cpu").eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cat.jpg", "coffee.jpg"])
def test_default_generator_finds_masks_on_the_shipped_examples(embedded_model, name):
    """The generator's defaults are the model's: the embedded model records its calibrated
    thresholds (with SAM's 0.88 / 0.95 it keeps no mask of either photo)."""
    assert automatic_defaults(embedded_model) == AUTOMATIC_DEFAULTS == {
        "pred_iou_thresh": 0.3, "stability_score_thresh": 0.3}
    gen = StableSamAutomaticMaskGenerator(embedded_model, points_per_side=8)
    assert (gen.pred_iou_thresh, gen.stability_score_thresh) == (0.3, 0.3)
    records = gen.generate(load_image(EXAMPLES_DIR / name))
    assert len(records) >= 1  # SAM's own thresholds (0.88 / 0.95) find none here
    assert all(r["predicted_iou"] > 0.3 and r["stability_score"] >= 0.3 for r in records)


def test_given_thresholds_win_and_other_models_keep_sams(embedded_model, small_model):
    by_name = StableSamAutomaticMaskGenerator(embedded_model, pred_iou_thresh=0.7)
    assert (by_name.pred_iou_thresh, by_name.stability_score_thresh) == (0.7, 0.3)
    by_position = StableSamAutomaticMaskGenerator(embedded_model, 8, 16, 0.6, 0.9)
    assert (by_position.pred_iou_thresh, by_position.stability_score_thresh) == (0.6, 0.9)
    assert automatic_defaults(small_model) == {}  # a model that records none: SAM's generator defaults
    sam = StableSamAutomaticMaskGenerator(small_model)
    assert (sam.pred_iou_thresh, sam.stability_score_thresh) == (0.88, 0.95)
    assert build_model(parse_model_spec("tiny-sam"), "cpu").sam.stablesam_automatic_defaults == AUTOMATIC_DEFAULTS


@pytest.mark.slow
def test_everything_cli_uses_the_models_thresholds(embedded_model, tmp_path, capsys):
    """`segment --everything` without thresholds = the API's default generator, same masks."""
    path = EXAMPLES_DIR / "coffee.jpg"
    rc, stdout, err = run(capsys, path, "--everything", "--points-per-side", 8, "--out", tmp_path / "m")
    assert rc == 0, err
    summary = json.loads((tmp_path / "m" / "masks.json").read_text())
    assert summary["settings"]["pred_iou_thresh"] == 0.3 and summary["settings"]["stability_score_thresh"] == 0.3
    assert "predicted IoU > 0.3, stability >= 0.3" in stdout
    api = StableSamAutomaticMaskGenerator(embedded_model, points_per_side=8, points_per_batch=CPU_MAX_BATCH)
    records = sorted(api.generate(load_image(path)), key=lambda r: -r["area"])
    assert summary["count"] == len(records) > 0
    assert [m["area"] for m in summary["masks"]] == [r["area"] for r in records]


def test_rle_output_and_shared_cache(small_model, image):
    cache = EmbeddingCache(None)
    options = dict(LOOSE, output_mode="coco_rle")
    first = StableSamAutomaticMaskGenerator(small_model, embedding_cache=cache, **options).generate(image)
    small_model.plugins_enabled = False
    StableSamAutomaticMaskGenerator(small_model, embedding_cache=cache, **options).generate(image)
    assert cache.encoder_calls == 1  # SAM and Stable-SAM on one embedding
    small_model.plugins_enabled = True
    again = StableSamAutomaticMaskGenerator(small_model, **options).generate(image)  # own encoder run
    assert [r["segmentation"] for r in first] == [r["segmentation"] for r in again]
    assert set(first[0]["segmentation"]) == {"size", "counts"}


def test_refuses_plain_sam(small_sam):
    with pytest.raises(TypeError, match="StableSam"):
        StableSamAutomaticMaskGenerator(small_sam)


# ------------------------------------------------------------------ CLI
def run(capsys, *args):
    rc = main(["segment", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


EVERYTHING = ("--everything", "--points-per-side", 4, "--pred-iou-thresh", 0, "--stability-thresh", 0)


def test_everything_writes_masks_overlay_and_summary(tmp_path, capsys, fake_embedded):
    w, h = Image.open(EXAMPLE_IMAGE).size
    work = tmp_path / "work"
    work.mkdir()
    out = work / "masks"
    rc, stdout, err = run(capsys, EXAMPLE_IMAGE, *EVERYTHING, "--out", out)
    assert rc == 0, err
    summary = json.loads((out / "masks.json").read_text())
    pngs = sorted(out.glob("mask_*.png"))
    assert summary["count"] == len(summary["masks"]) == len(pngs) > 0 and f"{len(pngs)} masks" in stdout
    assert summary["plugins"] is True and summary["settings"]["points_per_side"] == 4
    areas = [m["area"] for m in summary["masks"]]
    assert areas == sorted(areas, reverse=True)
    for record, png in zip(summary["masks"], pngs):
        mask = np.array(Image.open(png))
        assert record["file"] == png.name and mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert (mask > 0).sum() == record["area"]
        assert {"bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"} <= record.keys()
    assert Image.open(out / "overlay.png").size == (w, h)
    (out / "mask_999.png").write_bytes(b"not listed in masks.json")  # kept: --force replaces only its own files
    rc, _, err = run(capsys, EXAMPLE_IMAGE, *EVERYTHING, "--model", "tiny-sam", "--out", out)
    assert rc == 2 and "not empty" in err  # a folder that is not empty needs --force
    rc, _, err = run(capsys, EXAMPLE_IMAGE, *EVERYTHING, "--model", "tiny-sam", "--out", out, "--force")
    assert rc == 0, err
    assert (out / "mask_999.png").exists() and json.loads((out / "masks.json").read_text())["plugins"] is False
    assert [p.name for p in work.iterdir()] == ["masks"]  # no temporary folders left


@pytest.mark.parametrize("args,message", [
    (["--box", "1,1,50,50"], "takes no --box"),
    (["--point", "5,5"], "takes no --point"),
    (["--points-per-side", "0"], "--points-per-side must be"),
    (["--pred-iou-thresh", "1.5"], "--pred-iou-thresh must be"),
    (["--stability-thresh", "nan"], "--stability-thresh must be"),
    (["--min-area", "-1"], "--min-area must be"),
    (["--model", "grabcut"], "SAM model SPEC"),
])
def test_everything_bad_options(tmp_path, capsys, fake_embedded, args, message):
    work = tmp_path / "work"
    work.mkdir()
    rc, _, err = run(capsys, EXAMPLE_IMAGE, "--everything", *args, "--out", work / "masks")
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(work.iterdir())


def test_everything_bad_files(tmp_path, capsys, fake_embedded):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    rc, _, err = run(capsys, bad, "--everything", "--out", tmp_path / "m")
    assert rc == 2 and "not an image" in err and not (tmp_path / "m").exists()
    (tmp_path / "file").write_text("x")
    rc, _, err = run(capsys, EXAMPLE_IMAGE, "--everything", "--out", tmp_path / "file")
    assert rc == 2 and "not a folder" in err and (tmp_path / "file").read_text() == "x"
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    rc, _, err = run(capsys, EXAMPLE_IMAGE, "--everything", "--out", other)
    assert rc == 2 and "not empty" in err and [p.name for p in other.iterdir()] == ["keep.txt"]


def test_everything_picks_the_devices_grid_prints_it_and_shows_progress(tmp_path, capsys, fake_embedded):
    from stablesam.commands.segment import EverythingConfig

    cpu = EverythingConfig().cpu_points_per_side
    rc, stdout, err = run(capsys, EXAMPLE_IMAGE, "--everything", "--pred-iou-thresh", 0, "--stability-thresh", 0,
                          "--device", "cpu", "--out", tmp_path / "m")
    assert rc == 0, err
    assert f"grid: {cpu}x{cpu} clicks (the CPU default; --points-per-side N to change)" in stdout
    assert f"from a {cpu}x{cpu} grid" in stdout
    assert "automatic masks" in err and f"{cpu * cpu}/{cpu * cpu}" in err  # the progress bar, to its end
    assert EverythingConfig().points_per_side("cuda") == 32 and EverythingConfig().points_per_side("cpu") == cpu
