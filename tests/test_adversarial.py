"""Worst-case prompts: the box and click searches (stablesam.prompts.adversarial) and their benchmark rows."""

import itertools
import json

import numpy as np
import pytest

from stablesam.prompts.adversarial import click_space, search_box, search_click, search_prompt
from stablesam.evaluation.prompt_eval import EvalConfig, evaluate
from stablesam.models.segmenters import Segmenter
from stablesam.prompts.generation import box_from_noise, mask_to_box, parse_prompt, parse_prompts
from stablesam.evaluation.metrics import mask_iou
from stablesam.evaluation.reports import write_reports

G = np.array([40.0, 30.0, 119.0, 89.0])  # the ground-truth box (inclusive pixel indices)
SIZE = (160, 200)  # (H, W)


def box_iou(boxes: np.ndarray) -> np.ndarray:
    """IoU of boxes (n, 4) with G as rectangles: a model that segments exactly its box."""
    ix = np.clip(np.minimum(boxes[:, 2], G[2]) - np.maximum(boxes[:, 0], G[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], G[3]) - np.maximum(boxes[:, 1], G[1]), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (G[2] - G[0]) * (G[3] - G[1])
    return inter / (area - inter)


def objective(boxes):
    return box_iou(boxes), [None] * len(boxes)


@pytest.mark.parametrize("scale", [0.2, 0.4])
def test_box_search_finds_the_true_minimum_within_the_budget(scale):
    grid = np.array(list(itertools.product(np.linspace(-1, 1, 11), repeat=4)))  # vertices included
    true_min = box_iou(box_from_noise(G, grid, scale, SIZE)).min()
    for seed in range(10):
        found = search_box(objective, G, scale, SIZE, 48, np.random.default_rng(seed))
        assert found.passes <= 48
        assert found.value == pytest.approx(true_min, abs=1e-9), seed
        assert found.base == 1.0  # the first box tried is the ground-truth box


@pytest.mark.parametrize("u", [[1, -1, 1, -1], [-1, 1, -1, -1], [1, 0.5, -0.5, 1]])
def test_best_box_finds_a_box_off_centre(u):
    target = box_from_noise(G, np.array([u]), 0.3, SIZE)[0]

    def overlap(boxes):  # IoU with the target box: 1 there only
        ix = np.clip(np.minimum(boxes[:, 2], target[2]) - np.maximum(boxes[:, 0], target[0]), 0, None)
        iy = np.clip(np.minimum(boxes[:, 3], target[3]) - np.maximum(boxes[:, 1], target[1]), 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + np.prod(target[2:] - target[:2])
        return ix * iy / (area - ix * iy), [None] * len(boxes)

    found = search_box(overlap, G, 0.3, SIZE, 48, np.random.default_rng(0), maximise=True)
    assert found.value == found.values.max() and found.index > 0
    assert found.value > 0.95


def bumpy(boxes):
    """A fixed, many-valleyed function of the box."""
    return np.sin(boxes @ np.array([0.11, -0.07, 0.05, 0.13])) + np.cos(boxes[:, 0] * 0.3), [None] * len(boxes)


@pytest.mark.parametrize("budget", [1, 2, 7, 48, 100])
def test_box_search_stays_admissible_keeps_the_budget_and_repeats(budget):
    box = np.array([150.0, 5.0, 199.0, 60.0])  # at the image's right edge: clipping happens
    runs = [search_box(bumpy, box, 0.4, SIZE, budget, np.random.default_rng(7)) for _ in range(2)]
    found = runs[0]
    assert 1 <= found.passes <= budget and found.rounds <= found.passes
    assert np.all(np.abs(found.points) <= 1)  # u in noisy-box@R's reach
    assert np.array_equal(found.tried, box_from_noise(box, found.points, 0.4, SIZE))
    w, h = box[2] - box[0], box[3] - box[1]
    assert np.all(np.abs(found.tried - box) <= 0.4 * np.array([w, h, w, h]) + 1e-9)  # each side within R x side
    assert np.all(found.tried[:, :2] >= 0) and np.all(found.tried[:, 2] <= SIZE[1] - 1)
    assert found.value == found.values.min() and found.values[0] == pytest.approx(bumpy(box[None])[0][0])
    # same seed, same boxes; another seed, other starts
    assert np.array_equal(runs[1].tried, found.tried) and runs[1].index == found.index
    if budget > 2:
        other = search_box(bumpy, box, 0.4, SIZE, budget, np.random.default_rng(8))
        assert not np.array_equal(other.tried, found.tried)


def distance_to_outside(mask: np.ndarray) -> np.ndarray:
    """Brute force: each pixel's Euclidean distance to the nearest pixel outside the mask."""
    out = np.argwhere(~mask).astype(float)
    pix = np.argwhere(np.ones_like(mask)).astype(float)
    d = np.sqrt(((pix[:, None, :] - out[None]) ** 2).sum(-1)).min(axis=1)
    return d.reshape(mask.shape)


def test_adv_point_never_leaves_the_object_or_comes_near_its_boundary():
    mask = np.zeros((60, 70), bool)
    yy, xx = np.mgrid[:60, :70]
    mask[((yy - 25) ** 2 + (xx - 22) ** 2) <= 15 ** 2] = True  # a disk
    mask[20:27, 30:68] = True  # a strip 7 px thick: no admissible click on it
    mask[45:58, 50:63] = True  # a 13 x 13 square: its middle is admissible
    far = distance_to_outside(mask)
    assert np.array_equal(click_space(mask), mask & (far > 5))

    def wavy(clicks):
        return np.sin(clicks[:, 0] * 0.7) * np.cos(clicks[:, 1] * 0.45), [None] * len(clicks)

    for seed, maximise in itertools.product(range(4), (False, True)):
        found = search_click(wavy, click_space(mask), 48, np.random.default_rng(seed), maximise=maximise)
        xs, ys = found.tried[:, 0].astype(int), found.tried[:, 1].astype(int)
        assert np.array_equal(found.tried, np.stack([xs, ys], 1))  # whole pixels
        assert mask[ys, xs].all() and (far[ys, xs] > 5).all()
        assert found.passes <= 48 and len({tuple(t) for t in found.tried}) == found.passes
    # the first click is the most central one
    assert far[int(found.tried[0, 1]), int(found.tried[0, 0])] == far[click_space(mask)].max()
    # 9 x 9: the centre is exactly 5 px from the outside, so no click is admissible; 11 x 11: one is
    small = np.zeros((30, 30), bool)
    small[5:14, 5:14] = True
    assert search_prompt(parse_prompt("adv-point"), small, wavy, 48, np.random.default_rng(0)) is None
    small[5:16, 5:16] = True
    assert search_prompt(parse_prompt("adv-point"), small, wavy, 48, np.random.default_rng(0)).passes == 1


def test_prompt_names():
    assert [p.name for p in parse_prompts("adv-box@0.2,best-box@0.4,adv-point")] == [
        "adv-box@0.2", "best-box@0.4", "adv-point"]
    assert all(p.searched for p in parse_prompts("adv-box@0.2,best-box@0.4,adv-point"))
    for bad in ("adv-box", "adv-point@3", "best-box@-1", "adv-box@nan"):
        with pytest.raises(ValueError):
            parse_prompt(bad)


class BoxPainter(Segmenter):
    """Segments exactly its box, or a disk of radius 8 around its click."""

    name = "painter"

    def set_image(self, image):
        self.shape = image.shape[:2]

    def predict(self, prompts, multimask=False):
        out = np.zeros((len(prompts), *self.shape), bool)
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        for i in range(len(prompts)):
            if prompts.boxes is not None:
                x0, y0, x1, y1 = prompts.boxes[i]
                out[i] = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
            else:
                x, y = prompts.point_coords[i, 0]
                out[i] = (xx - x) ** 2 + (yy - y) ** 2 <= 64
        return out


class Toy:
    """Two objects: a 40 x 30 rectangle (any prompt) and a 6 x 6 square (too small for a click)."""

    name = "toy"

    def __init__(self):
        from stablesam.data.datasets import Sample

        self.samples = []
        for i, (y0, x0, side) in enumerate([(20, 30, (30, 40)), (40, 40, (6, 6))]):
            mask = np.zeros((90, 120), bool)
            mask[y0 : y0 + side[0], x0 : x0 + side[1]] = True
            self.samples.append(Sample("toy", f"o{i}", None, np.zeros((90, 120, 3), np.uint8), mask))

    def __len__(self):
        return len(self.samples)

    def load(self, i):
        return self.samples[i]


def test_benchmark_reports_iou_min_base_max_and_counts_small_objects(tmp_path):
    config = EvalConfig(parse_prompts("gt-box,noisy-box@0.2,adv-box@0.2,best-box@0.2,adv-point"), samples=5,
                        seed=0, adv_budget=12)
    result = evaluate([Toy()], [BoxPainter()], config, progress=False)
    rec = {(o["object"], o["prompt"]): o for o in result.objects}
    for obj in ("o0", "o1"):
        base = rec[(obj, "gt-box")]["iou"]
        assert rec[(obj, "adv-box@0.2")]["iou"] < base == rec[(obj, "adv-box@0.2")]["iou_base"]
        assert rec[(obj, "best-box@0.2")]["iou"] == base == 1.0  # the painter is perfect on the tight box
        assert rec[(obj, "adv-box@0.2")]["passes"] <= 12
        assert len(rec[(obj, "adv-box@0.2")]["box"].split(",")) == 4
    assert ("o1", "adv-point") not in rec and result.too_small == {"toy": {"adv-point": 1}}
    assert rec[("o0", "adv-point")]["iou"] <= rec[("o0", "adv-point")]["iou_base"]
    files = write_reports(result, ["painter"], tmp_path, {"command": "test", "samples": 5, "seed": 0})
    saved = json.loads(files["json"].read_text())
    (wc,) = saved["worst_case"]
    assert wc["IoU-Min@0.2"] < wc["noisy-box@0.2"] < wc["IoU-Base"] == wc["IoU-Max@0.2"] == 1.0
    assert wc["click objects"] == 1 and saved["too_small"] == {"toy": {"adv-point": 1}}
    md = files["md"].read_text()
    assert "| model | IoU-Base | IoU-Min@0.2 | noisy-box@0.2 | IoU-Max@0.2 | click IoU-Min | click IoU-Base |" in md
    assert "adv-point: 1 object(s) too small, skipped" in md
    assert '"40,' in files["csv"].read_text() or ",box," in files["csv"].read_text().splitlines()[0]
    assert files["examples"].stat().st_size > 0


class CountingPainter(BoxPainter):
    """BoxPainter that counts the prompts it decodes, and misses the object's bottom-right corner
    on every box (so no box is perfect and the worst box differs from the ground-truth one)."""

    def __init__(self):
        self.decoded = 0

    def predict(self, prompts, multimask=False):
        self.decoded += len(prompts)
        out = super().predict(prompts, multimask)
        out[:, 40:, 60:] = False
        return out


def test_box_search_starts_from_the_noisy_boxes_and_reuses_their_masks():
    """In the benchmark, adv-box@R's random starts are the object's own noisy-box@R prompts: its
    IoU-Min is never above the worst of them, and when gt-box and noisy-box@R ran first their
    masks are reused (K + 1 fewer decoder passes) with exactly the same result."""
    from stablesam.prompts.generation import generate, object_rng

    runs = {}
    for asked in ("adv-box@0.2,best-box@0.2", "gt-box,adv-box@0.2,noisy-box@0.2,best-box@0.2"):
        painter = CountingPainter()
        config = EvalConfig(parse_prompts(asked), samples=7, seed=3, adv_budget=20)
        result = evaluate([Toy()], [painter], config, progress=False)
        runs[asked] = ({(o["object"], o["prompt"]): o for o in result.objects}, painter.decoded)
    alone, both = runs.values()
    for obj in ("o0", "o1"):
        for p in ("adv-box@0.2", "best-box@0.2"):
            a, b = alone[0][(obj, p)], both[0][(obj, p)]
            assert (a["iou"], a["box"], a["iou_base"], a["tried"]) == (b["iou"], b["box"], b["iou_base"], b["tried"])
            assert a["passes"] == a["tried"] == 20 and b["passes"] == 20 - 8  # gt box + 7 noisy boxes reused
        sample = Toy().samples[int(obj[1])]
        noisy = generate("noisy-box@0.2", sample.mask, 7, object_rng(3, "toy", sample.name, "noisy-box@0.2"))
        painter = CountingPainter()
        painter.set_image(sample.image)
        worst_random = min(mask_iou(m, sample.mask) for m in painter.predict(noisy))
        assert alone[0][(obj, "adv-box@0.2")]["iou"] <= worst_random
    # per object: gt-box and noisy-box@0.2 decode 1 + 7 prompts, and each of the two searches 8 fewer
    assert both[1] == alone[1] + 2 * 8 - 2 * 2 * 8


def test_adv_box_rts_component_mines_admissible_boxes_worse_than_random(tmp_path):
    """On the embedded model and a real object (the cup in coffee.jpg, as the model segments it
    from its tight box), the boxes the `adv-box` component trains on stay within noisy-box@S's
    reach and are segmented worse than random boxes of that reach, on average."""
    import torch

    import stablesam
    from stablesam.models.cache import EmbeddingCache
    from stablesam.models.embedded import EXAMPLES_DIR
    from stablesam.evaluation.metrics import mask_iou
    from stablesam.training.rts import RtsMixture
    from stablesam.training.record import TrainConfig
    from stablesam.training.objects import TrainObject
    from stablesam.training.loop import TrainStep, step_items

    model = stablesam.load_model()
    image = stablesam.load_image(EXAMPLES_DIR / "coffee.jpg")
    predictor = stablesam.StableSamPredictor(model)
    predictor.set_image(image)
    mask = predictor.predict(box=np.array([180, 40, 440, 320]), multimask_output=False)[0][0]
    emb = EmbeddingCache(tmp_path / "cache").get(model.sam, image)
    obj = TrainObject("cup", emb.features, model.backend.low_res_target(mask, model.sam), np.packbits(mask.ravel()),
                      mask.shape, None, emb.extras)
    step = TrainStep(model, dice_weight=1.0)
    mixture = RtsMixture.parse("adv-box=1,adv-budget=8,max-noise=0.4")
    config = TrainConfig(model="tiny-sam", data=["x"], mixture=mixture.to_dict(), batch_size=6, seed=3)
    gt = mask_to_box(mask)
    w, h = gt[2] - gt[0], gt[3] - gt[1]

    def iou(boxes):
        return np.array([mask_iou(predictor.predict(box=b, multimask_output=False)[0][0], mask) for b in boxes])

    mined, random = [], []
    for s in range(3):
        for _, prompts, session in step_items([obj] * 6, s, config, 0, 1):
            assert session["kind"] == "adv-box" and 0 < session["scale"] <= 0.4
            scale, rng = session["scale"], np.random.default_rng(100 + s)
            box = step.mine_adv_box(obj, prompts.boxes[0], session)
            moved = np.abs(box - gt)
            assert (moved <= scale * np.array([w, h, w, h]) + 1e-6).all(), (box, gt, scale)
            mined.append(iou(box[None])[0])
            random.append(iou(box_from_noise(gt, rng.uniform(-1, 1, (8, 4)), scale, mask.shape)).mean())
    assert np.mean(mined) < np.mean(random) - 0.02, (np.mean(mined), np.mean(random))
    # seeded: the same step gives the same boxes
    again = [step.mine_adv_box(obj, p.boxes[0], ses) for _, p, ses in step_items([obj] * 6, 0, config, 0, 1)]
    first = [step.mine_adv_box(obj, p.boxes[0], ses) for _, p, ses in step_items([obj] * 6, 0, config, 0, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(again, first))
    with torch.no_grad():
        assert torch.isfinite(step(step_items([obj] * 6, 0, config, 0, 1)))
