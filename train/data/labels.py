"""Score labels as 5-bin opinion distributions (the ``score_dist`` training target).

A distribution target has five bins: the equal-width intervals of the [0, 1] score scale,
centred on 0.1, 0.3, 0.5, 0.7, 0.9 (bin 0 = worst, as a 1-5 rating scale's "bad" ...
"excellent" maps onto [0, 1] with (r - 1) / 4). Where a data set ships its rating counts
(KonIQ-10k: c1..c5) the target is those counts normalised; elsewhere it is a Gaussian
around the score label, truncated to [0, 1] and renormalised, with each bin receiving the
Gaussian's mass over its interval. Numpy only: the training config imports the default
width from here without pulling in torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from saliq.errors import ConfigError

SCORE_BINS = 5
BIN_EDGES = tuple(i / SCORE_BINS for i in range(SCORE_BINS + 1))  # 0, 0.2, ..., 1
BIN_CENTRES = tuple((a + b) / 2 for a, b in zip(BIN_EDGES[:-1], BIN_EDGES[1:]))
# Width of the Gaussian opinion spread around a label, on the [0, 1] score scale: half a
# bin, so a label at a bin centre keeps ~70 % of its mass in that bin and ~15 % in each
# neighbour, the shape of a rating histogram whose raters mostly agree within one category
# (a 1-5 rating SD of 0.4). Configurable as ``data.dist_sigma``.
DIST_SIGMA = 0.1


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


def label_distribution(score: float, sigma: float = DIST_SIGMA) -> np.ndarray:
    """float32 [5]: mass of N(score, sigma^2) per bin, truncated to [0, 1], summing to 1."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"score distribution sigma must be > 0, got {sigma}; fix data.dist_sigma")
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise ConfigError(f"score label {score} is outside [0, 1]; check the data set's range")
    cdf = _normal_cdf((np.asarray(BIN_EDGES, np.float64) - score) / sigma)
    mass = np.diff(cdf)
    # Truncation: only the mass inside [0, 1] counts, so renormalise by it (> 0 because the
    # label itself lies in [0, 1]).
    return (mass / mass.sum()).astype(np.float32)


def counts_distribution(counts: Sequence[float], where: str = "rating counts") -> np.ndarray:
    """float32 [5] from a data set's per-bin rating counts (worst bin first), summing to 1."""
    values = np.asarray(counts, np.float64).ravel()
    if values.shape != (SCORE_BINS,):
        raise ConfigError(f"{where}: need {SCORE_BINS} rating counts, got {values.size}")
    total = float(values.sum())
    if not np.isfinite(values).all() or (values < 0).any() or total <= 0:
        raise ConfigError(
            f"{where}: rating counts {values.tolist()} must be finite, non-negative and not "
            "all zero; fix the annotation file"
        )
    return (values / total).astype(np.float32)
