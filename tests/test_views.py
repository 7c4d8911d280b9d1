"""Preprocessing version 2's crop placement (docs/preprocessing.md) on hand-made saliency maps.

Placement is discrete: each case below was worked out by hand from the text, and both the
Python reference (saliq.views) and the native code (csrc/views.h via saliq._preproc) must
produce it; on random priors the two must agree exactly (windows, side and float32 weights).
The crop pixels are checked against the float64 oracle in test_native_preprocess.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from saliq import views as V
from saliq.errors import ModelFormatError

from . import preprocess_oracle as oracle

try:
    from saliq import _preproc as NATIVE
except ImportError:  # the Python reference is still tested
    NATIVE = None

# A 1920 x 1080 frame under a 27 x 48 prior: cells of 40 x 40 px, centres at 20 + 40 j.
W0, H0, ROWS, COLS = 1920, 1080, 27, 48
CFG = V.ViewConfig()  # K = 4, P = 96, K_s = 3, L_c = 1920: Q = 96 at 1080p


def _python(prior, width, height, cfg):
    return V.place_detail_crops(np.asarray(prior, np.float32), width, height, cfg)


def _native(prior, width, height, cfg):
    return NATIVE.place_crops(np.asarray(prior, np.float32), width, height, cfg.to_dict())


@pytest.fixture(params=["python", "native"])
def place(request):
    if request.param == "native" and NATIVE is None:
        pytest.skip("the native extension is not built")
    return _python if request.param == "python" else _native


def _origin(cell: int) -> int:
    """x0 (or y0) of the crop centred on cell `cell` of 40 px, Q = 96, before clamping."""
    return 40 * cell - 28  # floor(20 + 40 c - 48 + 0.5)


def _blob(i: int, j: int, sigma: float = 1.0) -> np.ndarray:
    ii, jj = np.mgrid[:ROWS, :COLS]
    return np.exp(-((ii - i) ** 2 + (jj - j) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_single_peak_then_ties_in_row_major_order(place):
    windows, side, weights = place(_blob(10, 20), W0, H0, CFG)
    assert side == 96
    # 1: the peak. Its window grown by Q/2 suppresses cells 8..12 x 18..22. 2: the best cells
    # left are the four at distance 3 (rows 7 and 13, columns 17 and 23), equal: the first in
    # row-major order is (7, 20). 3: it suppresses rows 5..9; of (13, 20), (10, 17), (10, 23)
    # the first is (10, 17).
    assert windows[0].tolist() == [_origin(20), _origin(10)]
    assert windows[1].tolist() == [_origin(20), _origin(7)]
    assert windows[2].tolist() == [_origin(17), _origin(10)]
    assert weights[0] == weights.max() > weights[1] > 0


def test_two_equal_peaks_first_in_row_major_order(place):
    prior = np.zeros((ROWS, COLS), np.float32)
    prior[20, 5] = prior[5, 40] = 1.0  # (5, 40) comes first in row-major order
    windows, _, weights = place(prior, W0, H0, CFG)
    assert windows[0].tolist() == [_origin(40), _origin(5)]
    assert windows[1].tolist() == [_origin(5), _origin(20)]
    # The weight is the mean prior of the cells centred inside the window: [1572, 1668) x
    # [172, 268) holds the centres 1580, 1620, 1660 x 180, 220, 260: 9 cells, one of them 1.
    assert weights[0] == pytest.approx(1 / 9)
    assert weights[1] == pytest.approx(1 / 9)


def test_a_close_second_peak_is_suppressed(place):
    prior = np.zeros((ROWS, COLS), np.float32)
    prior[10, 20], prior[10, 21], prior[20, 40] = 1.0, 0.9, 0.5
    windows, _, _ = place(prior, W0, H0, CFG)
    # (10, 21) lies inside the first crop's grown window: a crop there would overlap it.
    assert windows[1].tolist() == [_origin(40), _origin(20)]


def test_peaks_at_borders_and_corners_shift_crops_inside(place):
    prior = np.zeros((ROWS, COLS), np.float32)
    prior[0, 0], prior[ROWS - 1, COLS - 1], prior[13, 0] = 1.0, 0.9, 0.8
    windows, side, _ = place(prior, W0, H0, CFG)
    assert windows[0].tolist() == [0, 0]  # centred at (20, 20): shifted to the corner
    assert windows[1].tolist() == [W0 - side, H0 - side]  # (1900, 1060) -> (1824, 984)
    assert windows[2].tolist() == [0, _origin(13)]  # left edge, row 13: only x is shifted
    assert ((windows >= 0) & (windows + side <= [W0, H0])).all()


def test_all_zero_prior_gives_coverage_only_first_near_the_centre(place):
    windows, _, weights = place(np.zeros((ROWS, COLS), np.float32), W0, H0, CFG)
    # No peak: all four are coverage crops. 1: the crop centre nearest (960, 540): columns 23
    # and 24 (centres 940, 980) tie, row 13 (540) is exact -> (23, 13). 2: farthest from it:
    # the right corners (crop centres (1872, 48), (1872, 1032)) tie -> top-right. 3: top-left
    # and bottom-left tie at 1018.7 from the first -> top-left. 4: on the bottom edge, the
    # first crop sits left of the middle, so the best is right of it: centre (1820, 1032) is
    # 985.4 from the top-right crop and 1008 from the first (the bottom corners: 984).
    assert windows.tolist() == [[_origin(23), _origin(13)], [1824, 0], [0, 0], [1772, 984]]
    assert weights.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_salient_budget_ends_early_on_a_flat_remainder(place):
    prior = np.zeros((ROWS, COLS), np.float32)
    prior[5, 5] = 1.0
    windows, _, weights = place(prior, W0, H0, CFG)
    assert windows[0].tolist() == [_origin(5), _origin(5)]
    # One peak only: the three other slots are coverage, the first the farthest from it.
    assert windows[1].tolist() == [1824, 984]
    assert weights[0] > 0 and weights[1] == 0


def test_frames_smaller_than_a_crop_are_magnified(place):
    prior = np.zeros((56, 56), np.float32)
    prior[20, 30] = 1.0
    windows, side, _ = place(prior, 64, 48, CFG)
    assert side == 48  # the short side: the crops are magnified 48 -> 96
    assert (windows[:, 1] == 0).all() and ((windows[:, 0] >= 0) & (windows[:, 0] <= 16)).all()
    windows, side, weights = place(prior, 8, 8, CFG)
    assert side == 8 and windows.tolist() == [[0, 0]] * 4
    assert np.allclose(weights, prior.mean())  # every cell is centred inside the window


def test_no_cell_left_continues_over_all_cells(place):
    # 100 x 100, Q = 96: the first crop's grown window suppresses every cell (rule 3).
    # Cells of 4 px: crop origins are 0 (columns 0..11), 2 (12) or 4 (13..24) per axis.
    windows, side, _ = place(np.zeros((25, 25), np.float32), 100, 100, CFG)
    assert side == 96
    # (2, 2): centre (50, 50), the frame's. Then the farthest, all four corners at sqrt 8:
    # (0, 0) first; then (52, 48) and (52, 52) tie at sqrt 8 from the first: row 0 first ->
    # (4, 0); then (48, 52) and (52, 52) tie -> row 13, column 0 first -> (0, 4).
    assert windows.tolist() == [[2, 2], [0, 0], [4, 0], [0, 4]]


def test_4k_uses_twice_the_window(place):
    prior = np.zeros((56, 56), np.float32)
    prior[28, 28] = 1.0
    windows, side, _ = place(prior, 3840, 2160, CFG)
    assert side == 192  # s = 1920 / 3840 = 0.5: Q = 2P
    # Cell (28, 28) is centred at (1954.29, 1099.29): x0 = floor(1954.29 - 96 + 0.5).
    assert windows[0].tolist() == [1858, 1003]
    assert V.window_side(4000, 3000, 96, 1920) == 200  # s = 0.48
    assert V.window_side(1920, 1080, 96, 1920) == 96  # s = 1: the camera's own pixels


@pytest.mark.parametrize("width, height", [(8000, 200), (200, 8000), (4000, 64)])
def test_very_wide_and_tall_frames(place, width, height):
    prior = _blob(3, 40, sigma=2.0)
    windows, side, weights = place(prior, width, height, CFG)
    q = oracle.canonical_side(width, height, 96, 1920)
    assert side == q == min(width, height, round(96 * max(width, height) / 1920))
    assert ((windows >= 0) & (windows + side <= [width, height])).all()
    assert ((weights >= 0) & (weights <= 1)).all()


def test_grid_windows():
    cfg = V.ViewConfig(grid_crops=6, grid_size=224)
    windows, side = V.grid_windows(1920, 1080, cfg)
    # rows = round(sqrt(6 * 1080 / 1920)) = 2, cols = 3; centres at (320, 960, 1600) x
    # (270, 810), windows of 224 shifted inside.
    assert side == 224
    assert windows.tolist() == [[208, 158], [848, 158], [1488, 158], [208, 698], [848, 698]] + [
        [1488, 698]
    ]
    tall, side = V.grid_windows(100, 20000, V.ViewConfig(grid_crops=2, grid_size=64))
    # Q = min(round(64 * 20000 / 1920), 100) = 100. sqrt(2 * 200) = 20 rows would put both
    # windows in the top tenth: rows are capped at n = 2, centred at y = 5000 and 15000.
    assert side == 100 and tall.tolist() == [[0, 4950], [0, 14950]]
    assert V.grid_windows(640, 480, V.ViewConfig())[0].shape == (0, 2)


def test_boxes_are_normalised_windows():
    got = V.boxes(np.array([[0, 0], [1824, 984]]), 96, 1920, 1080)
    want = oracle.boxes([[0, 0], [1824, 984]], 96, 1920, 1080)
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.skipif(NATIVE is None, reason="the native extension is not built")
def test_native_placement_equals_python_on_random_priors():
    """Same float32 prior -> identical windows, side and weights (to the bit)."""
    rng = np.random.default_rng(0)
    for case in range(150):
        rows, cols = (int(v) for v in rng.integers(1, 40, 2))
        width, height = int(rng.integers(8, 5000)), int(rng.integers(8, 5000))
        prior = rng.random((rows, cols)).astype(np.float32)
        if case % 3 == 0:
            prior = np.round(prior * 2) / 2  # many exact ties
        if case % 10 == 0:
            prior[:] = 0
        k = int(rng.integers(1, 10))
        cfg = V.ViewConfig(
            detail_crops=k,
            salient_crops=int(rng.integers(0, k + 1)),
            crop_size=8 * int(rng.integers(1, 40)),
            grid_crops=int(rng.integers(0, 65)),
            grid_size=8 * int(rng.integers(1, 40)),
            canonical_long_side=int(rng.integers(64, 4000)),
        )
        want = _python(prior, width, height, cfg)
        got = _native(prior, width, height, cfg)
        where = f"case {case}: {width}x{height}, prior {prior.shape}, {cfg}"
        np.testing.assert_array_equal(got[0], want[0], err_msg=where)
        assert got[1] == want[1], where
        np.testing.assert_array_equal(got[2], want[2], err_msg=where)
        grid_want, grid_got = (
            V.grid_windows(width, height, cfg),
            NATIVE.grid_windows(width, height, cfg.to_dict()),
        )
        np.testing.assert_array_equal(grid_got[0], grid_want[0], err_msg=where)
        assert grid_got[1] == grid_want[1], where


@pytest.mark.skipif(NATIVE is None, reason="the native extension is not built")
@pytest.mark.parametrize(
    "views, match",
    [
        ({"detail_crop": 4}, "unknown key 'detail_crop'"),
        ({"crop_size": 90}, "multiples of 8"),
        ({"detail_crops": 0}, "detail_crops"),
        ({"detail_crops": 2, "salient_crops": 3}, "salient_crops"),
        ({"grid_crops": 65}, "grid_crops"),
        ({"crop_size": 96.0}, "integer"),
        ({"canonical_long_side": 32}, "canonical_long_side"),
    ],
)
def test_native_views_are_checked_like_view_config(views, match):
    with pytest.raises(ValueError, match=match):
        NATIVE.place_crops(np.zeros((4, 4), np.float32), 64, 64, views)
    with pytest.raises(ModelFormatError):
        V.ViewConfig.from_dict(views)
