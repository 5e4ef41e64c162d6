"""The simulated user of the f-BRS / RITM protocol, worked out by hand, and NoC arithmetic."""

import numpy as np
import pytest

from conftest import build_small_sam
from stablesam.evaluation.clicks import Click, next_click, number_of_clicks, run_clicks
from stablesam.modeling import StableSam
from stablesam.backends.predictor import StableSamPredictor


def canvas() -> np.ndarray:
    return np.zeros((16, 20), bool)


def test_first_click_is_the_deepest_object_pixel_first_in_row_major_order():
    gt = canvas()
    gt[2:9, 2:11] = True  # rows 2-8, cols 2-10: depth 4 at row 5, cols 5, 6, 7
    assert next_click(gt, canvas()) == Click(x=5, y=5, positive=True)


def test_the_farther_error_wins_and_sets_the_sign():
    gt = canvas()
    gt[2:9, 2:11] = True
    pred = gt.copy()
    pred[4:7, 4:7] = False  # a 3x3 hole: missed, depth 2 at (5, 5)
    pred[9:14, 13:18] = True  # a 5x5 extra square: depth 3 at (15, 11)
    assert next_click(gt, pred) == Click(x=15, y=11, positive=False)
    pred[9:14, 13:18] = False
    pred[10:13, 14:17] = True  # now a 3x3 extra square: depth 2, a tie with the hole
    assert next_click(gt, pred) == Click(x=15, y=11, positive=False)  # ties go negative (RITM)


def test_ignore_pixels_are_neither_missed_nor_extra():
    gt = canvas()
    gt[2:9, 2:11] = True
    pred = gt.copy()
    pred[4:7, 4:7] = False
    pred[9:14, 13:18] = True
    ignore = canvas()
    ignore[9:14, 13:18] = True  # the extra square lies in an ignore region
    assert next_click(gt, pred, ignore) == Click(x=5, y=5, positive=True)


def test_perfect_prediction_needs_no_click_and_a_clicked_pixel_is_not_clicked_again():
    gt = canvas()
    gt[2:9, 2:11] = True
    assert next_click(gt, gt) is None
    pred = gt.copy()
    pred[5, 5] = False
    ignore = canvas()
    ignore[5, 5] = True
    assert next_click(gt, pred, ignore) is None  # the only error is ignored
    hole = gt.copy()
    hole[4:7, 4:7] = False
    # distances are taken before the clicked pixel is removed (as RITM): its 8 neighbours keep depth 1
    assert next_click(gt, hole, clicked=[Click(5, 5, True)]) == Click(x=4, y=4, positive=True)


def test_border_counts_as_boundary():
    gt = canvas()
    gt[:, :6] = True  # touches the left, top and bottom borders
    c = next_click(gt, canvas())
    assert c.positive and c.x == 2  # 3 px from the left border and from the region's right edge


def test_number_of_clicks_and_failures():
    ious = [0.5, 0.86, 0.91, 0.95]
    assert number_of_clicks(ious, 0.85) == (2, False)
    assert number_of_clicks(ious, 0.9) == (3, False)
    assert number_of_clicks(ious, 0.99, max_clicks=20) == (20, True)  # never reached: the limit, a failure
    assert number_of_clicks([0.1] * 19 + [0.92], 0.9) == (20, False)  # reached at the last click


@pytest.fixture(scope="module")
def predictor():
    model = StableSam(build_small_sam())
    p = StableSamPredictor(model)
    rng = np.random.default_rng(0)
    p.set_image(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return p


def test_mask_input_reaches_the_decoder(predictor):
    coords, labels = np.array([[40.0, 30.0], [70.0, 50.0]]), np.array([1, 0])
    _, _, first = predictor.predict(point_coords=coords[:1], point_labels=labels[:1], multimask_output=False)
    _, _, without = predictor.predict(point_coords=coords, point_labels=labels, multimask_output=False)
    _, _, with_prev = predictor.predict(point_coords=coords, point_labels=labels, mask_input=first,
                                        multimask_output=False)
    assert np.abs(with_prev - without).max() > 1e-3


def test_click_runs_are_deterministic_and_complete(predictor):
    gt = np.zeros((96, 128), bool)
    gt[20:70, 30:100] = True
    a, b = run_clicks(predictor, gt, max_clicks=5), run_clicks(predictor, gt, max_clicks=5)
    assert a.clicks == b.clicks and a.ious == b.ious
    assert len(a.ious) == 5 and 1 <= len(a.clicks) <= 5
    assert a.clicks[0].positive and gt[a.clicks[0].y, a.clicks[0].x]
    assert len({(c.x, c.y) for c in a.clicks}) == len(a.clicks)


class ToyDataset:
    """Two objects on one random image, as a dataset's `load` gives them."""

    name = "toy"

    def __init__(self):
        from stablesam.data.datasets import Sample

        rng = np.random.default_rng(1)
        image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        a, b = np.zeros((96, 128), bool), np.zeros((96, 128), bool)
        a[10:50, 20:70] = True
        b[60:90, 80:120] = True
        ignore = np.zeros_like(b)
        ignore[58:60, 80:120] = True
        self.samples = [Sample("toy", "a", None, image, a), Sample("toy", "b", None, image, b, ignore)]

    def __len__(self):
        return len(self.samples)

    def load(self, i):
        return self.samples[i]


def test_click_benchmark_rows_agree_with_the_per_object_runs():
    from stablesam.evaluation.click_eval import ClickConfig, click_tables, evaluate_clicks
    from stablesam.models.segmenters import GrabCutSegmenter, SamSegmenter

    model = StableSam(build_small_sam())
    seg = SamSegmenter("small", model)
    config = ClickConfig(max_clicks=4, thresholds=(0.5, 0.99))
    result = evaluate_clicks([ToyDataset()], [seg], config, progress=False)
    assert len(result.objects) == 2 and len(result.rows) == 1
    row = result.rows[0]
    per_object = [[float(v) for v in o["ious"].split()] for o in result.objects]
    assert row["mIoU@k"] == pytest.approx(np.mean(per_object, 0).round(4).tolist(), abs=1e-4)
    expected = [number_of_clicks(ious, 0.99, 4) for ious in per_object]
    assert row["NoC@99"] == pytest.approx(np.mean([n for n, _ in expected]))
    assert row["NoF@99"] == sum(f for _, f in expected)
    for o in result.objects:  # the click sequence can be replayed: x,y,sign per click
        for token in o["clicks"].split():
            x, y, sign = token.split(",")
            assert sign in "+-" and 0 <= int(x) < 128 and 0 <= int(y) < 96
    assert "NoC@50" in click_tables(result.rows, config)
    with pytest.raises(ValueError, match="takes no clicks"):
        evaluate_clicks([ToyDataset()], [GrabCutSegmenter()], config, progress=False)


def test_eval_cli_clicks_protocol_writes_tables_csv_and_curve(tmp_path, fake_embedded, capsys):
    import csv
    import json

    from PIL import Image

    from stablesam.cli import main

    root = tmp_path / "toy"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    toy = ToyDataset()
    for s in toy.samples:
        Image.fromarray(toy.samples[0].image).save(root / "images" / f"{s.name}.png")
        Image.fromarray(s.mask.astype(np.uint8) * 255).save(root / "masks" / f"{s.name}.png")
    out = tmp_path / "out"
    args = ["eval", "--data", str(root), "--model", "tiny-sam", "--model", "tiny-stable-sam", "--protocol",
            "prompts,clicks", "--prompts", "gt-box", "--samples", "1", "--max-clicks", "3", "--no-cache",
            "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["clicks"]["max_clicks"] == 3 and len(summary["clicks"]["rows"]) == 2
    assert len(summary["rows"]) == 2  # the prompt table is still there
    assert "NoC@85" in (out / "results.md").read_text() and (out / "click_curve.png").stat().st_size > 0
    rows = list(csv.DictReader((out / "per_object.csv").open()))
    click_rows = [r for r in rows if r["protocol"] == "clicks"]
    assert len(click_rows) == 4 and all(len(r["ious"].split()) == 3 for r in click_rows)
    assert main(args[:3] + ["--model", "grabcut", "--protocol", "clicks", "--out", str(out.parent / "refused")]) == 2
    assert "takes no clicks" in capsys.readouterr().err
    assert main(args[:5] + ["--protocol", "taps", "--out", str(out.parent / "refused")]) == 2
