"""Metrics (saliq.train.metrics) and classical peers (saliq.train.peers)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from scipy import stats

from saliq.errors import BackendUnavailableError, InvalidImageError
from saliq.train import metrics as M
from saliq.train import peers

HW = (96, 128)


# ---------------------------------------------------------------------------------- IQA


def test_correlations_match_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 0.5 * x + rng.normal(size=200)
    assert M.srcc(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert M.krcc(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert M.plcc(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert M.rmse(x, y) == pytest.approx(np.sqrt(np.mean((x - y) ** 2)))
    ties = np.round(x)  # many ties: tau-b and average-rank Spearman
    assert M.srcc(ties, y) == pytest.approx(stats.spearmanr(ties, y).statistic, abs=1e-12)
    assert M.krcc(ties, y) == pytest.approx(stats.kendalltau(ties, y).statistic, abs=1e-12)
    assert set(M.iqa_summary(x, y)) == {"srcc", "plcc", "krcc", "rmse"}


def test_perfect_and_reversed_rankings() -> None:
    x = np.arange(20, dtype=float)
    for fn in (M.srcc, M.krcc, M.plcc, M.plcc_logistic):
        assert fn(x, 3 * x + 1) == pytest.approx(1.0)
        assert fn(x, -x) == pytest.approx(-1.0)
    assert M.srcc(x, np.exp(x / 3)) == pytest.approx(1.0)  # rank metrics ignore monotone maps


def test_constant_inputs_give_nan_not_errors() -> None:
    x, c = np.arange(10.0), np.full(10, 3.0)
    for fn in (M.srcc, M.krcc, M.plcc, M.plcc_logistic):
        assert math.isnan(fn(c, x)) and math.isnan(fn(x, c))
    assert math.isnan(M.srcc([1.0], [2.0]))
    with pytest.raises(ValueError):
        M.srcc(x, x[:5])


def test_plcc_logistic_linearises_a_sigmoid() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-6, 6, 300)
    mos = 100 / (1 + np.exp(-x)) + rng.normal(0, 1, 300)
    assert M.plcc_logistic(x, mos) > 0.99 > M.plcc(x, mos)
    assert M.plcc_logistic(-x, mos) < -0.99  # a backwards model stays negative


def test_roc_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 500)
    scores = np.round(labels + rng.normal(0, 1.5, 500))  # integers: heavy ties
    assert M.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert M.roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    assert math.isnan(M.roc_auc([0.1, 0.2], [1, 1]))


def test_grouped_srcc_hand_built() -> None:
    scores = [9, 5, 1, 1, 5, 9, 4, 4, 4, 7, 7]
    levels = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 1]
    groups = ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 2
    mean, per = M.grouped_srcc(scores, levels, groups)
    # a: perfect (+1); b: reversed (-1); c: constant -> 0 (no credit); d: one level -> left out.
    assert per == pytest.approx({"a": 1.0, "b": -1.0, "c": 0.0})
    assert mean == pytest.approx(0.0)
    mean, per = M.grouped_srcc([3.0, 2.0], [1, 2], [("photo", "blur")] * 2)
    assert mean == pytest.approx(1.0) and list(per) == [("photo", "blur")]
    assert math.isnan(M.grouped_srcc([1.0, 2.0], [1, 1], ["x", "x"])[0])


# ---------------------------------------------------------------------------- saliency


def _clustered_points(rng: np.random.Generator, n: int = 60) -> np.ndarray:
    centres = rng.uniform([10, 10], [HW[1] - 10, HW[0] - 10], size=(3, 2))
    pts = centres[rng.integers(0, 3, n)] + rng.normal(0, 2.0, (n, 2))
    return np.clip(pts, 0, [HW[1] - 1, HW[0] - 1])


def _centre_points(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    h, w = HW
    return np.stack([rng.normal(w / 2, fraction * w, n), rng.normal(h / 2, fraction * h, n)], 1)


def test_fixation_builders() -> None:
    pts = np.array([[0.0, 0.0], [5.7, 2.2], [5.1, 2.9], [500.0, 3.0], [-1.0, 4.0]])
    fmap = M.fixation_map_from_points(pts, HW)
    assert fmap.dtype == bool and fmap.shape == HW
    assert {tuple(p) for p in np.argwhere(fmap)} == {(0, 0), (2, 5)}  # (row, col); off-image out
    inner = np.array([[40.0, 30.0], [70.2, 50.5], [70.9, 50.1]])
    dens = M.fixation_density_map(inner, HW)
    assert dens.sum() == pytest.approx(1.0)
    assert np.unravel_index(dens.argmax(), HW) == (50, 70)  # the doubly fixated pixel
    edge = M.fixation_density_map([[0.0, 0.0]], HW)
    assert edge.sum() == pytest.approx(1.0) and edge.argmax() == 0  # mirrored, not lost
    assert not M.fixation_density_map(np.empty((0, 2)), HW).any()
    assert M.resize_to(np.ones((10, 20)), HW).shape == HW


def test_nss_of_matching_and_inverse_maps() -> None:
    rng = np.random.default_rng(3)
    pts = _clustered_points(rng)
    fmap = M.fixation_map_from_points(pts, HW)
    good = M.fixation_density_map(pts, HW)
    assert M.nss(good, fmap) > 2.0
    assert M.nss(good.max() - good, fmap) < 0.0
    rows_cols = np.argwhere(fmap)  # the integer (row, col) form gives the same answer
    assert M.nss(good, rows_cols) == pytest.approx(M.nss(good, fmap))
    assert math.isnan(M.nss(np.ones(HW), fmap))
    with pytest.raises(ValueError, match="resize_to"):
        M.nss(np.ones((10, 10)), fmap)


def test_auc_judd_perfect_random_inverse() -> None:
    rng = np.random.default_rng(4)
    pts = _clustered_points(rng, 300)
    fmap = M.fixation_map_from_points(pts, HW)
    assert M.auc_judd(fmap.astype(float), fmap) > 0.999
    random_aucs = [M.auc_judd(rng.random(HW), fmap, rng=rng) for _ in range(10)]
    assert abs(np.mean(random_aucs) - 0.5) < 0.03
    dens = M.fixation_density_map(pts, HW)
    assert M.auc_judd(dens, fmap) > 0.9
    assert M.auc_judd(dens.max() - dens, fmap) < 0.3
    assert math.isnan(M.auc_judd(np.ones(HW), fmap, jitter=False))


def test_shuffled_auc_discounts_centre_bias() -> None:
    rng = np.random.default_rng(5)
    centre = M.centre_gaussian_map(HW, 0.15)
    fmap = M.fixation_map_from_points(_centre_points(rng, 400, 0.15), HW)
    others = M.fixation_map_from_points(_centre_points(rng, 1000, 0.15), HW)
    judd = M.auc_judd(centre, fmap)
    sauc = M.shuffled_auc(centre, fmap, others, rng=0)
    assert judd > 0.7
    assert abs(sauc - 0.5) < 0.05
    assert M.shuffled_auc(centre, fmap, others, step_size=0.1) == pytest.approx(sauc, abs=0.03)
    # An image-specific map still wins under sAUC.
    pts = _clustered_points(rng, 200)
    own = M.fixation_map_from_points(pts, HW)
    assert M.shuffled_auc(M.fixation_density_map(pts, HW), own, others) > 0.8


def test_distribution_metric_identities() -> None:
    rng = np.random.default_rng(6)
    x = M.fixation_density_map(_clustered_points(rng), HW)
    assert M.cc(x, x) == pytest.approx(1.0)
    assert M.sim(x, x) == pytest.approx(1.0)
    assert M.kld(x, x) == pytest.approx(0.0, abs=1e-9)
    y = M.fixation_density_map(_clustered_points(rng), HW)
    assert M.cc(x, y) < 1.0 and M.sim(x, y) < 1.0 and M.kld(x, y) > 0.0
    assert math.isnan(M.cc(np.ones(HW), x)) and math.isnan(M.sim(np.ones(HW), x))
    with pytest.raises(ValueError):
        M.kld(x - 1.0, x)


def test_tuned_centre_gaussian_recovers_sigma() -> None:
    rng = np.random.default_rng(7)
    for true in (0.1, 0.25):
        data = [(HW, _centre_points(rng, 30, true)) for _ in range(30)]
        assert abs(M.tune_centre_gaussian(data) - true) < 0.06


# ---------------------------------------------------------------------------------- peers


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (224, 224), interpolation=cv2.INTER_AREA)


def test_variance_of_laplacian_falls_with_blur(photo: np.ndarray) -> None:
    import cv2

    blurred = cv2.GaussianBlur(photo, (0, 0), 2.0)
    assert peers.variance_of_laplacian(blurred) < 0.5 * peers.variance_of_laplacian(photo)
    with pytest.raises(InvalidImageError):
        peers.variance_of_laplacian(photo.astype(np.float32))


def test_brisque_quality_falls_with_noise(photo: np.ndarray) -> None:
    try:
        peers._brisque_model()
    except BackendUnavailableError as exc:
        pytest.skip(f"brisque unavailable: {exc}")
    rng = np.random.default_rng(8)
    noisy = np.clip(photo + rng.normal(0, 30, photo.shape), 0, 255).astype(np.uint8)
    assert peers.brisque_quality(noisy) < peers.brisque_quality(photo) - 10
    assert set(peers.PEERS) == {"variance_of_laplacian", "brisque"}


def test_missing_brisque_is_one_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "brisque", None)  # makes `import brisque` fail
    peers._brisque_model.cache_clear()
    try:
        with pytest.raises(BackendUnavailableError, match="pip install brisque"):
            peers.brisque_quality(np.zeros((32, 32, 3), np.uint8))
    finally:
        peers._brisque_model.cache_clear()
