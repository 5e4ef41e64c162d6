import numpy as np
import pytest

from stablesam.prompts.generation import (
    DEFAULT_PROMPTS,
    PromptType,
    fix_boxes,
    generate,
    mask_to_box,
    noisy_boxes,
    object_rng,
    parse_prompt,
    parse_prompts,
    sam_jitter_boxes,
    sample_points,
)


def make_mask(h=40, w=60):
    m = np.zeros((h, w), dtype=bool)
    m[2:5, 3:8] = True  # rows 2..4, cols 3..7
    return m


def assert_valid(boxes, h, w):
    assert np.all(boxes[:, [0, 1]] >= 0) and np.all(boxes[:, 2] <= w - 1) and np.all(boxes[:, 3] <= h - 1)
    assert np.all(boxes[:, 2] - boxes[:, 0] >= 1) and np.all(boxes[:, 3] - boxes[:, 1] >= 1)


def test_mask_to_box():
    np.testing.assert_array_equal(mask_to_box(make_mask()), [3, 2, 7, 4])
    one = np.zeros((5, 6), bool)
    one[4, 5] = True  # single pixel in the bottom-right corner
    np.testing.assert_array_equal(mask_to_box(one), [5, 4, 5, 4])
    with pytest.raises(ValueError, match="empty"):
        mask_to_box(np.zeros((4, 4), bool))


def test_fix_boxes():
    # Inverted corners are sorted; a box past the right edge is clipped to x = W - 1 = 99 and,
    # now zero-width, widened to 1 px inside; a zero-height box is widened around its centre.
    out = fix_boxes(np.array([[10, 0, 5, 4], [100, 5, 120, 5], [-3, -2, -1, 60]]), (50, 100))
    np.testing.assert_array_equal(out, [[5, 0, 10, 4], [98, 4.5, 99, 5.5], [0, 0, 1, 49]])
    assert_valid(out, 50, 100)
    # A valid box is unchanged; a single-pixel gt box (x0 == x1) becomes 1 px wide.
    np.testing.assert_array_equal(fix_boxes(np.array([[0, 0, 99, 49]]), (50, 100)), [[0, 0, 99, 49]])
    np.testing.assert_array_equal(fix_boxes(np.array([[5, 4, 5, 4]]), (5, 6)), [[4, 3, 5, 4]])
    for size in [(1, 10), (10, 1), (0, 0)]:
        with pytest.raises(ValueError, match=">= 2 px"):
            fix_boxes(np.array([[0, 0, 1, 1]]), size)


def test_noisy_boxes_scale_zero_is_exact():
    box = np.array([3.3, 2.7, 17.1, 9.9])
    out = noisy_boxes(box, 0.0, 5, np.random.default_rng(0), (40, 60))
    assert out.shape == (5, 4)
    assert np.array_equal(out, np.tile(box, (5, 1)))
    # ... clipped to the image
    out = noisy_boxes(np.array([-5.0, 2, 70, 9]), 0.0, 1, np.random.default_rng(0), (40, 60))
    np.testing.assert_array_equal(out, [[0, 2, 59, 9]])


def test_noisy_boxes_ranges():
    box = np.array([100.0, 200.0, 140.0, 300.0])  # w = 40, h = 100
    out = noisy_boxes(box, 0.4, 2000, np.random.default_rng(1), (1000, 1000))
    cx, cy = (out[:, 0] + out[:, 2]) / 2, (out[:, 1] + out[:, 3]) / 2
    w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
    assert np.all(np.abs(cx - 120) <= 0.4 * 20 + 1e-9) and np.all(np.abs(cy - 250) <= 0.4 * 50 + 1e-9)
    assert np.all((w >= 24 - 1e-9) & (w <= 56 + 1e-9)) and np.all((h >= 60 - 1e-9) & (h <= 140 + 1e-9))
    assert np.abs(cx - 120).max() > 7  # the noise really spans U(-1, 1)
    same = noisy_boxes(box, 0.4, 2000, np.random.default_rng(1), (1000, 1000))
    assert np.array_equal(out, same)


def test_noisy_boxes_never_degenerate():
    out = noisy_boxes(np.array([0.0, 0.0, 2.0, 3.0]), 5.0, 500, np.random.default_rng(2), (10, 12))
    assert_valid(out, 10, 12)


def test_sam_jitter_boxes():
    big = np.array([100.0, 100.0, 900.0, 900.0])  # std 80 px, clamped to 20 px
    out = sam_jitter_boxes(big, 500, np.random.default_rng(3), (1000, 1000))
    assert np.abs(out - big).max() <= 20 + 1e-9
    assert np.abs(out - big).max() > 19
    small = np.array([400.0, 400.0, 450.0, 500.0])  # std 5 px (x), 10 px (y): clamp rarely hit
    out = sam_jitter_boxes(small, 4000, np.random.default_rng(4), (1000, 1000))
    std = (out - small).std(axis=0)
    np.testing.assert_allclose(std, [5, 10, 5, 10], rtol=0.1)
    tiny = sam_jitter_boxes(np.array([0.0, 0.0, 1.0, 1.0]), 200, np.random.default_rng(5), (5, 5), frac=3.0)
    assert_valid(tiny, 5, 5)


def test_sample_points():
    mask = make_mask()
    pts = sample_points(mask, 3, 50, np.random.default_rng(0))
    assert pts.shape == (50, 3, 2)
    cols, rows = pts[..., 0], pts[..., 1]  # (x, y) = (col, row)
    assert np.array_equal(cols, np.floor(cols)) and np.array_equal(rows, np.floor(rows))
    assert mask[rows.astype(int), cols.astype(int)].all()
    assert np.array_equal(pts, sample_points(mask, 3, 50, np.random.default_rng(0)))  # deterministic
    for s in pts:  # distinct within a set
        assert len({tuple(p) for p in s}) == 3
    two = np.zeros((4, 4), bool)
    two[1, 1] = two[2, 3] = True
    pts = sample_points(two, 5, 400, np.random.default_rng(1))  # k > pixels: with replacement
    assert pts.shape == (400, 5, 2)
    assert set(map(tuple, pts.reshape(-1, 2))) == {(1.0, 1.0), (3.0, 2.0)}
    assert 0.4 < np.mean(pts[..., 0] == 1) < 0.6
    with pytest.raises(ValueError, match="empty"):
        sample_points(np.zeros((3, 3), bool), 1, 1, np.random.default_rng(0))


def test_parse_prompt_round_trip():
    names = DEFAULT_PROMPTS.split(",")
    parsed = parse_prompts(DEFAULT_PROMPTS)
    assert [p.name for p in parsed] == names
    assert parse_prompt("noisy-box@0.4") == PromptType("noisy-box", 0.4)
    assert parse_prompt(" points@3 ").value == 3
    assert parse_prompt("gt-box").value is None


@pytest.mark.parametrize(
    "bad",
    ["box", "gt-box@1", "noisy-box", "noisy-box@-0.1", "noisy-box@abc", "noisy-box@nan",
     "points@0", "points@1.5", "points", ""],
)
def test_parse_prompt_errors(bad):
    with pytest.raises(ValueError, match="accepted forms"):
        parse_prompt(bad)


def test_parse_prompts_errors():
    with pytest.raises(ValueError, match="twice"):
        parse_prompts("gt-box,points@1,gt-box")
    with pytest.raises(ValueError):
        parse_prompts(" , ")


def test_generate():
    mask = make_mask()
    rng = np.random.default_rng(0)
    p = generate(parse_prompt("gt-box"), mask, 20, rng)
    assert len(p) == 1 and p.point_coords is None
    np.testing.assert_array_equal(p.boxes, [[3, 2, 7, 4]])
    p = generate("noisy-box@0.4", mask, 20, rng)
    assert p.boxes.shape == (20, 4) and len(p) == 20
    assert_valid(p.boxes, 40, 60)
    p = generate("points@3", mask, 20, rng)
    assert p.boxes is None and p.point_coords.shape == (20, 3, 2)
    assert np.array_equal(p.point_labels, np.ones((20, 3)))
    assert p[4].point_coords.shape == (1, 3, 2)
    c = p.point_coords.astype(int)
    assert mask[c[..., 1], c[..., 0]].all()
    p0 = generate("noisy-box@0", mask, 3, rng)
    np.testing.assert_array_equal(p0.boxes, np.tile([3, 2, 7, 4], (3, 1)))


def test_object_rng():
    def draw(*keys):
        return object_rng(0, *keys).integers(0, 2**62, size=4)

    assert np.array_equal(draw("davis345", "007", "points@3"), draw("davis345", "007", "points@3"))
    assert not np.array_equal(draw("davis345", "007"), draw("davis345", "008"))
    assert not np.array_equal(draw("a", "b"), draw("b", "a"))
    assert not np.array_equal(draw("ab"), draw("a", "b"))
    assert not np.array_equal(draw(5), draw("5"))
    assert not np.array_equal(object_rng(0, "x").random(), object_rng(1, "x").random())
    # Pinned: the derivation must stay stable across runs, processes and versions.
    seq = object_rng(0, "davis345", "000", "points@1").bit_generator.seed_seq
    assert seq.entropy == 106279721629163356778563439361018818621


def test_noisy_points_stay_within_their_range_and_the_image():
    from stablesam.prompts.generation import noisy_points

    pts = np.array([[10.0, 5.0], [50.0, 40.0]])
    out = noisy_points(pts, 0.5, np.array([40.0, 20.0]), 200, np.random.default_rng(0), (48, 64))
    assert out.shape == (200, 2, 2)
    assert (out >= 0).all() and (out[..., 0] <= 63).all() and (out[..., 1] <= 47).all()
    shift = np.abs(out - pts[None])
    assert (shift[..., 0] <= 0.5 * 40 / 2 + 1e-9).all() and (shift[..., 1] <= 0.5 * 20 / 2 + 1e-9).all()
    assert shift[:, 1, 0].max() > 8  # the noise uses its range (unclipped click, bound 10)
    assert np.array_equal(noisy_points(pts, 0.0, np.array([40.0, 20.0]), 3, np.random.default_rng(1), (48, 64)),
                          np.broadcast_to(pts, (3, 2, 2)))


def test_part_points_stay_on_one_part_of_the_object():
    from stablesam.prompts.generation import part_points

    mask = np.zeros((40, 200), bool)
    mask[10:30, 10:190] = True  # a long bar: a part is a short stretch of it
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = part_points(mask, 4, rng)
        assert pts.shape == (1, 4, 2) and mask[pts[0, :, 1].astype(int), pts[0, :, 0].astype(int)].all()
        assert np.ptp(pts[0, :, 0]) <= 0.3 * 180  # within about a quarter of the bar
        assert len({tuple(p) for p in pts[0]}) == 4


def test_rts_mixture_settings_parse_and_part_clicks_keep_the_default_stream():
    from stablesam.training.rts import RtsMixture, sample_rts_prompt

    m = RtsMixture.parse("noisy-box=0.6,points=0.4,max-noise=0.8,max-points=3,part-clicks=0.5")
    assert (m.noisy_box, m.points, m.gt_box, m.max_noise, m.max_points, m.part_clicks) == (0.6, 0.4, 0.0, 0.8, 3, 0.5)
    with pytest.raises(ValueError, match="max-points"):
        RtsMixture.parse("points=1,max-points=2.5")
    with pytest.raises(ValueError, match="part_clicks"):
        RtsMixture(part_clicks=1.5)
    mask = np.zeros((50, 60), bool)
    mask[10:40, 5:55] = True
    # part clicks change only the clicks: the same seeds draw the same kinds and the same boxes
    a = [sample_rts_prompt(mask, RtsMixture(part_clicks=1.0), np.random.default_rng(i)) for i in range(30)]
    b = [sample_rts_prompt(mask, RtsMixture(part_clicks=0.0), np.random.default_rng(i)) for i in range(30)]
    for (ka, pa), (kb, pb) in zip(a, b):
        assert ka == kb and (pa.boxes is None) == (pb.boxes is None)
        assert pa.point_coords is not None or np.array_equal(pa.boxes, pb.boxes)
    assert any(pa.point_coords is not None and not np.array_equal(pa.point_coords, pb.point_coords)
               for (_, pa), (_, pb) in zip(a, b))
