"""BioSIQNet's saliency decomposition: one saliency map -> high- and low-saliency targets.

Wang et al. (IEEE TNNLS 2025, Sec. I and Fig. 1) threshold a saliency map into "one [map]
representing strong intensity responses and one representing weakly activated locations": the
focus of attention visits the high-saliency locations first, the low ones after. Their
threshold is an 8-bit intensity, swept over 70..150 and best at 120 (Fig. 5), i.e. 120/255 of
a map scaled to a maximum of 255.

Here, on a map m >= 0 with maximum M > 0:

    high = m where m >= t * M, else 0        low = m where m < t * M, else 0

each then sum-normalised (the losses compare distributions), so high + low is the input map
before normalisation. The values are kept, not binarised: the paper's Fig. 1 shows graded maps,
and its KLD/CC/SIM losses compare graded distributions. An all-zero map, or a part with no pixel
(a flat map has no low part: every pixel equals the maximum), stays all-zero; the saliency
losses then have nothing to match (KL 0, CC and SIM 0 by their conventions, docs/losses.md).
"""

from __future__ import annotations

import numpy as np

SPLIT_THRESHOLD = 120.0 / 255.0  # the paper's best threshold (Fig. 5), of a max-normalised map


def check_threshold(threshold: float) -> float:
    """The threshold as a float in (0, 1]; ValueError naming the fix otherwise."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ValueError(f"saliency threshold must be a number in (0, 1], got {threshold!r}")
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(
            f"saliency threshold {threshold} is outside (0, 1]: it is a fraction of the map's "
            f"maximum (the paper's 120 of 255 is {SPLIT_THRESHOLD:.4f})"
        )
    return float(threshold)


def _sum_normalise(part: np.ndarray) -> np.ndarray:
    total = float(part.sum(dtype=np.float64))
    return (part / total).astype(np.float32) if total > 0 else np.zeros_like(part, np.float32)


def split_saliency(
    saliency: np.ndarray, threshold: float = SPLIT_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """(high, low): the map's values at or above ``threshold`` x its maximum, and below it.

    ``saliency``: a non-negative map of any shape (e.g. [h, w] or [1, h, w]); the maximum is
    taken over the whole array, so pass one image's map at a time. Both results are float32,
    shaped as the input, each summing to 1 (or all-zero where that part is empty).
    """
    threshold = check_threshold(threshold)
    values = np.asarray(saliency, dtype=np.float32)
    if values.size == 0:
        raise ValueError("split_saliency: the saliency map is empty")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("split_saliency: the saliency map must be finite and non-negative")
    peak = float(values.max())
    if peak <= 0.0:
        zero = np.zeros_like(values)
        return zero, zero.copy()
    # Compared on the max-normalised map, as the paper thresholds an 8-bit map scaled to 255.
    high_mask = values / peak >= threshold
    high = np.where(high_mask, values, 0.0).astype(np.float32)
    low = np.where(high_mask, 0.0, values).astype(np.float32)
    return _sum_normalise(high), _sum_normalise(low)
