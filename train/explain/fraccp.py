"""FracCP: the fraction of correctly ordered pairs within each source image, averaged over
images (Kirillov et al., 2024, Table III on SACID).

A "group" is one source image and its distorted versions (SACID: one CLIC photo under four
codec presets at three bitrates). Inside a group, every pair of versions whose labels differ
is one comparison the metric can get right or wrong; the group's FracCP is the share it gets
right, and the reported number is the unweighted mean over groups, so a photo with many
versions does not outweigh one with few.

Ties (the paper does not say; Kendall's tau-b and ROC AUC settle them the same way):

* labels tied (people could not tell the pair apart): the pair is left out, since it has no
  order to get right;
* predictions tied (within ``score_tol``) on a pair whose labels differ: half credit
  (``tie_credit``, 0.5 by default), as a coin flip would earn on average;
* a group with no pair of different labels (one version, or all labels equal) has no FracCP
  and is left out of the mean; :func:`fraccp_per_group` reports it as NaN.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike


def _as_vector(values: ArrayLike, name: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"fraccp: {name} holds NaN or infinite values; drop those items first")
    return out


def _group_value(scores: np.ndarray, labels: np.ndarray, tie_credit: float, tol: float) -> float:
    """FracCP of one group (NaN when no pair has different labels)."""
    i, j = np.triu_indices(len(scores), k=1)
    label_order = np.sign(labels[i] - labels[j])
    diff = scores[i] - scores[j]
    score_order = np.where(np.abs(diff) <= tol, 0.0, np.sign(diff))
    ordered = label_order != 0
    if not ordered.any():
        return float("nan")
    credit = np.where(score_order == 0, tie_credit, (score_order == label_order).astype(float))
    return float(credit[ordered].mean())


def fraccp_per_group(
    scores: ArrayLike,
    labels: ArrayLike,
    groups: Sequence[Hashable],
    tie_credit: float = 0.5,
    score_tol: float = 0.0,
) -> dict[Hashable, float]:
    """``{group: FracCP}`` in first-appearance order; NaN for a group without an ordered pair.

    ``scores`` and ``labels`` are both "higher = better" (pass ``-dmos`` for DMOS labels).
    """
    s, l = _as_vector(scores, "scores"), _as_vector(labels, "labels")
    if not len(s) == len(l) == len(groups):
        raise ValueError(
            f"fraccp: scores ({len(s)}), labels ({len(l)}) and groups ({len(groups)}) must have "
            "one entry per image"
        )
    if not 0.0 <= tie_credit <= 1.0 or score_tol < 0:
        raise ValueError("fraccp: tie_credit must be in [0, 1] and score_tol >= 0")
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    return {
        group: _group_value(s[idx], l[idx], tie_credit, score_tol) for group, idx in members.items()
    }


def fraccp(
    scores: ArrayLike,
    labels: ArrayLike,
    groups: Sequence[Hashable],
    tie_credit: float = 0.5,
    score_tol: float = 0.0,
) -> float:
    """Mean over groups of the fraction of correctly ordered pairs (ties: module docstring)."""
    values = [
        v
        for v in fraccp_per_group(scores, labels, groups, tie_credit, score_tol).values()
        if not np.isnan(v)
    ]
    if not values:
        raise ValueError(
            "fraccp: no group has two items with different labels; FracCP needs several "
            "versions of one source image with different quality labels"
        )
    return float(np.mean(values))
