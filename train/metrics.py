"""Evaluation metrics: the one definition of every IQA and saliency formula saliq reports.

NumPy + SciPy (+ OpenCV for resizing and blurring); no torch, so evaluation runs anywhere.

Conventions
-----------
* IQA statistics return ``nan`` (never raise) when they are undefined, e.g. for constant inputs,
  so that a degenerate model shows up as ``nan`` in a table instead of killing an evaluation run.
* Saliency metrics follow the MIT saliency benchmark (Bylinskii et al., "What do different
  evaluation metrics tell us about saliency models?", TPAMI 2019, and its MATLAB code). Maps are
  ``[H, W]`` arrays at the image's resolution; use :func:`resize_to` first, since silently
  resizing inside a metric hides resolution mistakes.
* Fixations given to a metric are either a binary ``[H, W]`` fixation map or an integer ``(N, 2)``
  array of **(row, col)** pixel indices. Raw dataset points given to the map builders
  (:func:`fixation_map_from_points`, :func:`fixation_density_map`, :func:`tune_centre_gaussian`)
  are **(x, y)** in 0-based pixel units (1-based MATLAB datasets need ``- 1``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Sequence

import numpy as np
from scipy import optimize, stats

from saliq.preprocess import centre_gaussian

# MATLAB's eps, as used by the MIT benchmark's KLD: keeps log() finite where a map is zero.
KLD_EPS = 2.2204e-16
# The MIT AUC-Judd jitter (rand/1e7): small enough to only break exact ties.
AUC_JITTER = 1e-7
# Gaussian blur of fixation density maps, as a fraction of max(H, W): roughly one degree of
# visual angle at typical eye-tracking viewing distances (MIT1003 / SALICON practice).
FIXATION_BLUR_SIGMA_FRACTION = 0.03
# Default search grid for the tuned centre-Gaussian baseline (fraction of width / height).
CENTRE_SIGMA_CANDIDATES = tuple(round(0.05 + 0.025 * i, 3) for i in range(19))  # 0.05 .. 0.5

ArrayLike = np.ndarray | Sequence[float]
RngLike = np.random.Generator | int | None
# NumPy 2 renamed trapz; keep working on 1.x as well.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


# --------------------------------------------------------------------------------------------
# IQA: correlation between predicted scores and subjective scores
# --------------------------------------------------------------------------------------------


def _paired(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values but target has {t.size}; they must pair up")
    return p, t


def _undefined(*arrays: np.ndarray) -> bool:
    # A correlation needs at least two points and spread in every variable.
    return any(a.size < 2 or bool(np.all(a == a[0])) for a in arrays)


def srcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Spearman rank-order correlation (average ranks for ties); nan if either is constant."""
    p, t = _paired(pred, target)
    if _undefined(p, t):
        return math.nan
    return float(stats.spearmanr(p, t).statistic)


def plcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Plain Pearson linear correlation; nan if either input is constant."""
    p, t = _paired(pred, target)
    if _undefined(p, t):
        return math.nan
    return float(stats.pearsonr(p, t).statistic)


def krcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Kendall rank correlation (tau-b, which corrects for ties); nan if either is constant."""
    p, t = _paired(pred, target)
    if _undefined(p, t):
        return math.nan
    return float(stats.kendalltau(p, t).statistic)


def rmse(pred: ArrayLike, target: ArrayLike) -> float:
    """Root-mean-square error on the raw scales (nan for empty input)."""
    p, t = _paired(pred, target)
    if p.size == 0:
        return math.nan
    return float(np.sqrt(np.mean((p - t) ** 2)))


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    z = np.clip(-(x - b3) / max(abs(b4), 1e-12), -500.0, 500.0)  # exp() overflow guard
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def plcc_logistic(pred: ArrayLike, target: ArrayLike) -> float:
    """Pearson after the standard 4-parameter logistic mapping of ``pred`` onto ``target``.

    The mapping removes a monotone non-linearity between the model's scale and MOS (VQEG
    practice); the result is negative when the fitted mapping is decreasing. If the fit
    fails or degenerates, plain Pearson is returned instead, because a failed fit says
    nothing about the model and plain PLCC is the honest fallback.
    """
    p, t = _paired(pred, target)
    if _undefined(p, t):
        return math.nan
    start = [t.max(), t.min(), float(np.mean(p)), float(np.std(p)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OptimizeWarning / overflow: judged by result below
            params, _ = optimize.curve_fit(logistic4, p, t, p0=start, maxfev=20000)
        mapped = logistic4(p, *params)
    except (RuntimeError, ValueError):
        return plcc(p, t)
    if not np.all(np.isfinite(mapped)) or _undefined(mapped):
        return plcc(p, t)
    # b1 < b2 is a decreasing fit: the model ranks backwards. Keep that sign, or a reversed
    # model would report a high positive PLCC after the mapping flipped it.
    direction = 1.0 if params[0] >= params[1] else -1.0
    return direction * float(stats.pearsonr(mapped, t).statistic)


def _auc_from_samples(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC = P(pos > neg) + 0.5 P(pos == neg), for each row of ``neg``.

    ``neg`` may be 1-D (one AUC) or 2-D (one AUC per row, used by the shuffled AUC's splits).
    Counting against sorted positives is O((n + m) log n) and handles ties exactly.
    """
    pos = np.sort(pos)
    below_or_equal = np.searchsorted(pos, neg, side="right")  # positives <= each negative
    strictly_below = np.searchsorted(pos, neg, side="left")  # positives < each negative
    greater = pos.size - below_or_equal
    ties = below_or_equal - strictly_below
    wins = (greater + 0.5 * ties).sum(axis=-1)
    return wins / (pos.size * neg.shape[-1])


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count one half).

    nan when only one class is present.
    """
    s, y = _paired(scores, labels)
    positive = y > 0
    if positive.all() or not positive.any():
        return math.nan
    return float(_auc_from_samples(s[positive], s[~positive]))


def iqa_summary(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """The standard IQA table row: srcc, plcc (plain Pearson), krcc, rmse."""
    return {
        "srcc": srcc(pred, target),
        "plcc": plcc(pred, target),
        "krcc": krcc(pred, target),
        "rmse": rmse(pred, target),
    }


def grouped_srcc(
    scores: ArrayLike, levels: ArrayLike, groups: Iterable[Hashable]
) -> tuple[float, dict[Hashable, float]]:
    """Mean over groups of SRCC(score, -level): does quality fall as distortion severity rises?

    ``groups`` labels each item (e.g. ``(photo, distortion_type)``), so ranking is judged only
    among versions of the same content and distortion, where the order is known for certain.

    A group whose scores are constant counts as correlation 0, not nan: a model that cannot
    rank the levels gets no credit, and dropping the group instead would reward collapsing
    to a constant output. Groups whose levels are all equal (or with < 2 items) have no
    ground-truth order and are left out of the mean and the dict. Mean is nan if none remain.
    """
    s, lv = _paired(scores, levels)
    labels = list(groups)
    if len(labels) != s.size:
        raise ValueError(f"groups has {len(labels)} labels but scores has {s.size} values")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(labels):
        members.setdefault(g, []).append(i)
    per_group: dict[Hashable, float] = {}
    for g, idx in members.items():
        gs, gl = s[idx], lv[idx]
        if _undefined(gl):
            continue
        per_group[g] = 0.0 if _undefined(gs) else srcc(gs, -gl)
    mean = float(np.mean(list(per_group.values()))) if per_group else math.nan
    return mean, per_group


# --------------------------------------------------------------------------------------------
# Saliency: maps, fixations and the MIT benchmark metrics
# --------------------------------------------------------------------------------------------


def _as_map(sal: np.ndarray, name: str = "sal") -> np.ndarray:
    m = np.asarray(sal, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [H, W] map, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} contains nan/inf; fix the model output before scoring")
    return m


def _as_fixation_map(fixations: np.ndarray, hw: tuple[int, int], name: str) -> np.ndarray:
    """Binary [H, W] map from a fixation map or integer (row, col) points; drops off-image ones."""
    f = np.asarray(fixations)
    if f.ndim == 2 and f.shape == tuple(hw):
        return f > 0
    if f.ndim == 2 and f.shape[1] == 2 and np.issubdtype(f.dtype, np.integer):
        rows, cols = f[:, 0], f[:, 1]
        inside = (rows >= 0) & (rows < hw[0]) & (cols >= 0) & (cols < hw[1])
        out = np.zeros(hw, dtype=bool)
        out[rows[inside], cols[inside]] = True
        return out
    raise ValueError(
        f"{name} must be a binary map of shape {tuple(hw)} (the saliency map's; see resize_to) "
        f"or an integer (N, 2) array of (row, col), got {f.dtype} {f.shape}"
    )


def _check_same_shape(sal: np.ndarray, other: np.ndarray, name: str) -> None:
    if sal.shape != other.shape:
        raise ValueError(
            f"sal is {sal.shape} but {name} is {other.shape}; use resize_to(sal, {name}.shape)"
        )


def _rng(rng: RngLike) -> np.random.Generator:
    # A fixed default seed so that repeated evaluations of the same model report the same number.
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng or 0)


def _unit_range(m: np.ndarray) -> np.ndarray | None:
    """Min-max normalise to [0, 1] (MIT's ``normalize``); None for a constant map."""
    lo, hi = float(m.min()), float(m.max())
    return None if hi <= lo else (m - lo) / (hi - lo)


def resize_to(sal: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a saliency map to ``hw = (H, W)`` (a no-op if already that size)."""
    import cv2

    m = _as_map(sal)
    h, w = int(hw[0]), int(hw[1])
    if m.shape == (h, w):
        return m
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)


def _pixel_indices(points_xy: ArrayLike, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    # Pixel (r, c) covers [c, c + 1) x [r, r + 1), so floor maps both integer indices and
    # continuous coordinates correctly; off-image points are dropped because clipping would
    # pile them onto the border.
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    cols, rows = np.floor(pts[:, 0]).astype(np.int64), np.floor(pts[:, 1]).astype(np.int64)
    inside = (rows >= 0) & (rows < hw[0]) & (cols >= 0) & (cols < hw[1])
    return rows[inside], cols[inside]


def fixation_map_from_points(points_xy: ArrayLike, hw: tuple[int, int]) -> np.ndarray:
    """Binary [H, W] fixation map (bool) from (x, y) points; off-image points are dropped."""
    rows, cols = _pixel_indices(points_xy, hw)
    out = np.zeros((int(hw[0]), int(hw[1])), dtype=bool)
    out[rows, cols] = True
    return out


def fixation_density_map(
    points_xy: ArrayLike,
    hw: tuple[int, int],
    sigma_fraction: float = FIXATION_BLUR_SIGMA_FRACTION,
) -> np.ndarray:
    """Continuous fixation density: fixation counts blurred by a Gaussian, summing to 1.

    sigma = ``sigma_fraction * max(H, W)``. Repeated fixations on one pixel add up (unlike
    the binary map). Mirror borders keep the mass of near-edge fixations inside the image.
    All zeros when no point falls inside the image.
    """
    import cv2

    h, w = int(hw[0]), int(hw[1])
    rows, cols = _pixel_indices(points_xy, (h, w))
    counts = np.zeros((h, w), dtype=np.float64)
    np.add.at(counts, (rows, cols), 1.0)
    if rows.size == 0:
        return counts
    sigma = sigma_fraction * max(h, w)
    density = cv2.GaussianBlur(
        counts, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )
    return density / density.sum()


def nss(sal: np.ndarray, fixation_map: np.ndarray) -> float:
    """Normalized Scanpath Saliency: mean of the standardised map at fixated pixels.

    nan for a constant map or no fixations. Uses the population std (MATLAB's std uses
    n - 1; the difference is below 1e-5 for any real image size).
    """
    m = _as_map(sal)
    fix = _as_fixation_map(fixation_map, m.shape, "fixation_map")
    std = float(m.std())
    if std == 0.0 or not fix.any():
        return math.nan
    return float(((m[fix] - m.mean()) / std).mean())


def cc(sal: np.ndarray, density: np.ndarray) -> float:
    """Pearson correlation between the map and a continuous fixation density map."""
    m, d = _as_map(sal), _as_map(density, "density")
    _check_same_shape(m, d, "density")
    return plcc(m, d)


def sim(sal: np.ndarray, density: np.ndarray) -> float:
    """Similarity (histogram intersection) of the two maps as distributions, in [0, 1].

    As in the MIT code each map is min-max normalised then divided by its sum, so a constant
    map (undefined after min-max) gives nan, as does an all-zero density.
    """
    m, d = _as_map(sal), _as_map(density, "density")
    _check_same_shape(m, d, "density")
    mu, du = _unit_range(m), _unit_range(d)
    if mu is None or du is None:
        return math.nan
    return float(np.minimum(mu / mu.sum(), du / du.sum()).sum())


def kld(sal: np.ndarray, density: np.ndarray) -> float:
    """KL divergence KL(density || sal) of the sum-normalised maps (MIT form, lower = better).

    ``sum(q * log(eps + q / (p + eps)))`` with eps = 2.2204e-16 (MATLAB eps), which keeps the
    value finite where the map is zero. Maps must be non-negative; an all-zero one gives nan.
    """
    m, d = _as_map(sal), _as_map(density, "density")
    _check_same_shape(m, d, "density")
    if m.min() < 0 or d.min() < 0:
        raise ValueError("kld needs non-negative maps; shift by the minimum or apply a softmax")
    ms, ds = m.sum(), d.sum()
    if ms == 0 or ds == 0:
        return math.nan
    p, q = m / ms, d / ds
    return float(np.sum(q * np.log(KLD_EPS + q / (p + KLD_EPS))))


def auc_judd(
    sal: np.ndarray, fixation_map: np.ndarray, jitter: bool = True, rng: RngLike = None
) -> float:
    """AUC-Judd (MIT ``AUC_Judd``): ROC area with thresholds at the fixated pixels' values.

    True-positive rate = fraction of fixated pixels above the threshold; false-positive rate =
    fraction of *all other* pixels above it. ``jitter`` adds U(0, 1e-7) noise to break ties as
    the MIT code does; unlike MIT it is added after min-max normalisation so its size does not
    depend on the map's scale. Without jitter a constant map gives nan; with it, about 0.5.
    """
    m = _as_map(sal)
    fix = _as_fixation_map(fixation_map, m.shape, "fixation_map")
    if not fix.any():
        return math.nan
    unit = _unit_range(m)
    s = np.zeros_like(m) if unit is None else unit
    if jitter:
        s = s + _rng(rng).random(s.shape) * AUC_JITTER
    elif unit is None:
        return math.nan
    s = s.ravel()
    n_pixels = s.size
    thresholds = np.sort(s[fix.ravel()])[::-1]
    n_fix = thresholds.size
    above = n_pixels - np.searchsorted(np.sort(s), thresholds, side="left")  # count s >= t
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    # MIT subtracts i, the fixated pixels counted so far, from the pixels above threshold.
    fp = np.concatenate([[0.0], (above - i) / (n_pixels - n_fix), [1.0]])
    return float(_trapezoid(tp, fp))


def shuffled_auc(
    sal: np.ndarray,
    fixation_map: np.ndarray,
    other_fixation_map: np.ndarray,
    n_splits: int = 100,
    rng: RngLike = None,
    step_size: float | None = None,
) -> float:
    """Shuffled AUC (MIT ``AUC_shuffled``): negatives are other images' fixation locations.

    Because the negatives share the dataset's centre bias, a pure centre-bias map scores ~0.5
    and only image-specific prediction is rewarded. ``other_fixation_map`` is the union of the
    fixations of other (e.g. 10 random) images, on this image's grid. Each split samples
    ``min(n_fix, n_other)`` negatives without replacement; the result is the mean over splits.

    ``step_size=None`` computes each split's AUC exactly (ties count one half, as in the
    Tuebingen code); ``step_size=0.1`` reproduces MIT's coarse threshold grid over the
    min-max-normalised map, for comparing with published MIT tables.
    """
    m = _as_map(sal)
    fix = _as_fixation_map(fixation_map, m.shape, "fixation_map")
    other = _as_fixation_map(other_fixation_map, m.shape, "other_fixation_map")
    s = _unit_range(m)
    if s is None:
        s = np.zeros_like(m)  # a constant map ranks nothing: every split gives exactly 0.5
    s = s.ravel()
    pos = s[fix.ravel()]
    candidates = np.flatnonzero(other.ravel())
    n_neg = min(pos.size, candidates.size)
    if pos.size == 0 or n_neg == 0:
        return math.nan
    gen = _rng(rng)
    picks = np.stack([gen.choice(candidates, size=n_neg, replace=False) for _ in range(n_splits)])
    neg = s[picks]  # [n_splits, n_neg]
    if step_size is None:
        return float(_auc_from_samples(pos, neg).mean())
    # MIT: thresholds 0:step:max, descending, with (0, 0) and (1, 1) appended.
    top = max(float(pos.max()), float(neg.max()))
    thresholds = (np.arange(int(math.floor(top / step_size + 1e-9)) + 1) * step_size)[::-1]
    tp = (pos[None, :] >= thresholds[:, None]).mean(axis=1)
    fp = (neg[:, None, :] >= thresholds[None, :, None]).mean(axis=2)  # [n_splits, n_thr]
    tp = np.concatenate([[0.0], tp, [1.0]])
    zeros, ones = np.zeros((n_splits, 1)), np.ones((n_splits, 1))
    fp = np.concatenate([zeros, fp, ones], axis=1)
    return float(np.mean([_trapezoid(tp, row) for row in fp]))


# --------------------------------------------------------------------------------------------
# Baseline: centre Gaussian tuned on training fixations
# --------------------------------------------------------------------------------------------


def centre_gaussian_map(hw: tuple[int, int], sigma_fraction: float) -> np.ndarray:
    """Centre-bias baseline map; sigma is ``sigma_fraction`` of the width / height per axis.

    Same formula as the model's prior (``saliq.preprocess.centre_gaussian``), kept in one place.
    """
    return centre_gaussian(int(hw[0]), int(hw[1]), float(sigma_fraction)).astype(np.float64)


def tune_centre_gaussian(
    images_fixations: Sequence[tuple[tuple[int, int], ArrayLike]],
    candidates: Sequence[float] = CENTRE_SIGMA_CANDIDATES,
) -> float:
    """The ``sigma_fraction`` whose centre Gaussian has the best mean NSS on these photos.

    ``images_fixations`` is ``[(hw, points_xy), ...]`` for the *training* photos; images with
    no on-image fixation are skipped. Ties go to the first (smallest) candidate.
    """
    fix_maps = [(tuple(hw), fixation_map_from_points(pts, hw)) for hw, pts in images_fixations]
    fix_maps = [(hw, f) for hw, f in fix_maps if f.any()]
    if not fix_maps:
        raise ValueError("no fixation falls inside any image; cannot tune the centre Gaussian")
    best, best_nss = float(candidates[0]), -math.inf
    for fraction in candidates:
        cache: dict[tuple[int, int], np.ndarray] = {}  # photos often share a size
        scores = []
        for hw, f in fix_maps:
            if hw not in cache:
                cache[hw] = centre_gaussian_map(hw, fraction)
            scores.append(nss(cache[hw], f))
        mean = float(np.mean(scores))
        if mean > best_nss:
            best, best_nss = float(fraction), mean
    return best
