import itertools

import numpy as np
import pytest

from stablesam.evaluation.metrics import boundary_iou, mask_iou, mask_to_boundary, stability


def square(size, r0, r1, c0, c1):
    m = np.zeros(size, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def test_mask_iou_offset_squares():
    # A = rows/cols 0..3 (16 px), B = rows/cols 2..5 (16 px): overlap 2x2 = 4, union 28.
    a, b = square((10, 10), 0, 4, 0, 4), square((10, 10), 2, 6, 2, 6)
    assert mask_iou(a, b) == pytest.approx(4 / 28)
    assert mask_iou(b.astype(np.uint8), a.astype(np.uint8)) == pytest.approx(4 / 28)


def test_mask_iou_empty_and_errors():
    empty = np.zeros((5, 5), bool)
    assert mask_iou(empty, empty) == 1.0
    assert mask_iou(empty, square((5, 5), 0, 2, 0, 2)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        mask_iou(np.zeros((5, 6)), empty)


def test_mask_iou_ignore():
    a, b = square((10, 10), 0, 4, 0, 4), square((10, 10), 2, 6, 2, 6)
    # Ignoring B's 12 pixels outside A leaves pred = the 4 overlap pixels, gt = A: 4 / 16.
    assert mask_iou(b, a, ignore=b & ~a) == pytest.approx(0.25)


def test_boundary_widths():
    # 20x20: d = max(1, round(0.02 * 28.28)) = 1; 10x10 square -> 10x10 minus 8x8 = 36 px.
    assert mask_to_boundary(square((20, 20), 5, 15, 5, 15)).sum() == 36
    # The image border counts as background: a 5x5 corner square keeps only its 3x3 core.
    assert mask_to_boundary(square((20, 20), 0, 5, 0, 5)).sum() == 25 - 9
    # 100x100: d = round(0.02 * 141.4) = round(2.83) = 3; 60x60 square -> 60^2 - 54^2 = 684.
    assert mask_to_boundary(square((100, 100), 20, 80, 20, 80)).sum() == 684


def test_boundary_iou_hand_worked():
    a = square((20, 20), 5, 15, 5, 15)
    assert boundary_iou(a, a) == 1.0
    # Shift by one column: both boundaries are 1-px rings of 36 px. They share rows 5 and 14
    # over cols 6..14 (2 x 9 = 18 px); the vertical sides (cols 5, 14 vs 6, 15) never meet.
    # BIoU = 18 / (36 + 36 - 18) = 1/3 (mask IoU would be 90/110).
    b = square((20, 20), 5, 15, 6, 16)
    assert boundary_iou(b, a) == pytest.approx(1 / 3)
    # A ring of width 2 (square minus its 6x6 centre) erodes to nothing with d = 1, so its
    # boundary is all 64 px and contains the square's 36-px boundary: 36 / 64.
    ring = a & ~square((20, 20), 7, 13, 7, 13)
    assert boundary_iou(ring, a) == pytest.approx(36 / 64)
    empty = np.zeros((20, 20), bool)
    assert boundary_iou(empty, empty) == 1.0
    assert boundary_iou(empty, a) == 0.0


def test_boundary_iou_ignore():
    a, b = square((20, 20), 5, 15, 5, 15), square((20, 20), 5, 15, 6, 16)
    ignore = np.zeros((20, 20), bool)
    ignore[:, 14:] = True
    # Cols >= 14 dropped. A's ring: rows 5, 14 x cols 5..13 (18) + col 5 x rows 6..13 (8) = 26.
    # B's ring: rows 5, 14 x cols 6..13 (16) + col 6 x rows 6..13 (8) = 24. Shared: 16.
    # BIoU = 16 / (26 + 24 - 16) = 8/17 (1/3 without ignore).
    assert boundary_iou(b, a, ignore=ignore) == pytest.approx(8 / 17)


def test_stability_hand_worked():
    a = square((10, 10), 0, 4, 0, 4)  # 16 px
    b = square((10, 10), 2, 6, 2, 6)  # 16 px
    c = square((10, 10), 0, 4, 0, 2)  # 8 px, inside A, disjoint from B
    assert stability(np.stack([a, a, a])) == 1.0
    # IoU(A,B) = 4/28, IoU(A,C) = 8/16, IoU(B,C) = 0 -> mean = (1/7 + 1/2) / 3 = 3/14.
    assert stability(np.stack([a, b, c])) == pytest.approx(3 / 14)
    # Ignoring cols 0..1 empties C and halves A: IoU(A,B) = 4/20, the others 0 -> 1/15.
    ignore = square((10, 10), 0, 10, 0, 2)
    assert stability(np.stack([a, b, c]), ignore=ignore) == pytest.approx(1 / 15)
    assert stability(a[None]) is None
    assert stability(np.zeros((2, 4, 4), bool)) == 1.0


def test_stability_matches_pairwise():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 30, 40)) < 0.3
    ignore = rng.random((30, 40)) < 0.2
    expected = np.mean([mask_iou(p, q, ignore) for p, q in itertools.combinations(masks, 2)])
    assert stability(masks, ignore=ignore) == pytest.approx(expected)
