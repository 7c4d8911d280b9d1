"""The parity gate: is a reduced-precision engine still the model that was exported?

Pure NumPy so that it can be unit-tested everywhere, although what it guards (TensorRT
engines) only runs on a GPU. An engine passes when, on the same preprocessed images:

1. every score is within ``tolerance`` of the reference score (scores live in [0, 1]);
2. no pair the reference separates by more than ``tolerance`` is ranked the other way
   (closer pairs may swap: within the tolerance they are a tie by rule 1's standard);
3. every saliency map correlates (Pearson, per image) at least ``min_saliency_cc`` with
   the reference map. A flat map on both sides counts as identical (CC 1); a flat map on
   one side only cannot correlate and counts as 0.

Any NaN or inf fails the gate: a non-finite output is never "close enough".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_TOLERANCE = 0.01
DEFAULT_MIN_SALIENCY_CC = 0.99
# Below this standard deviation a map is treated as flat: fp16 noise on a constant map
# would otherwise produce an arbitrary correlation.
FLAT_STD = 1e-6


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_score_diff: float
    mean_score_diff: float
    misranked_pairs: int
    compared_pairs: int  # pairs whose reference scores differ by more than the tolerance
    min_saliency_cc: float
    median_saliency_cc: float
    tolerance: float
    min_saliency_cc_required: float
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.reasons)
        return (
            f"parity on {self.images} images: max |score diff| {self.max_score_diff:.2e} "
            f"(mean {self.mean_score_diff:.2e}, tolerance {self.tolerance:g}), misranked "
            f"pairs {self.misranked_pairs}/{self.compared_pairs}, saliency CC min "
            f"{self.min_saliency_cc:.4f} median {self.median_saliency_cc:.4f} -> {verdict}"
        )


def saliency_correlations(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Pearson CC per image between two [N, ...] stacks of maps (float64 arithmetic)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    tst = np.asarray(test, dtype=np.float64).reshape(len(test), -1)
    if ref.shape != tst.shape:
        raise ValueError(f"saliency shapes differ: {reference.shape} vs {test.shape}")
    ref_c = ref - ref.mean(axis=1, keepdims=True)
    tst_c = tst - tst.mean(axis=1, keepdims=True)
    ref_sd = np.sqrt((ref_c**2).mean(axis=1))
    tst_sd = np.sqrt((tst_c**2).mean(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        cc = (ref_c * tst_c).mean(axis=1) / (ref_sd * tst_sd)
    ref_flat, tst_flat = ref_sd < FLAT_STD, tst_sd < FLAT_STD
    cc = np.where(ref_flat & tst_flat, 1.0, cc)
    cc = np.where(ref_flat ^ tst_flat, 0.0, cc)
    # NaN inputs propagate into cc as NaN; the gate reads NaN as a failure.
    return cc


def misranked_pairs(ref: np.ndarray, test: np.ndarray, tolerance: float) -> tuple[int, int]:
    """(pairs ranked the other way, pairs compared) among pairs with |ref_i - ref_j| > tol."""
    ref = np.asarray(ref, dtype=np.float64).ravel()
    test = np.asarray(test, dtype=np.float64).ravel()
    i, j = np.triu_indices(len(ref), k=1)
    ref_diff = ref[i] - ref[j]
    test_diff = test[i] - test[j]
    compared = np.abs(ref_diff) > tolerance
    # A tie in the test scores of a clearly separated pair also loses the order.
    flipped = compared & (np.sign(ref_diff) != np.sign(test_diff))
    return int(flipped.sum()), int(compared.sum())


def parity_report(
    ref_scores: np.ndarray,
    ref_saliency: np.ndarray | None,
    test_scores: np.ndarray,
    test_saliency: np.ndarray | None,
    tolerance: float = DEFAULT_TOLERANCE,
    min_saliency_cc: float = DEFAULT_MIN_SALIENCY_CC,
) -> ParityReport:
    """Compare a test runtime's outputs with the reference's; see the module docstring."""
    if not tolerance > 0 or not 0 < min_saliency_cc <= 1:
        raise ValueError(
            f"tolerance must be > 0 and min_saliency_cc in (0, 1], got {tolerance}, "
            f"{min_saliency_cc}"
        )
    ref = np.asarray(ref_scores, dtype=np.float64).ravel()
    tst = np.asarray(test_scores, dtype=np.float64).ravel()
    if ref.shape != tst.shape or ref.size == 0:
        raise ValueError(f"score arrays must be non-empty and equal: {ref.shape} vs {tst.shape}")
    if (ref_saliency is None) != (test_saliency is None):
        raise ValueError("pass saliency for both runtimes or for neither")
    reasons: list[str] = []

    finite = np.isfinite(ref).all() and np.isfinite(tst).all()
    if not finite:
        reasons.append("scores contain NaN or inf")
    diff = np.abs(ref - tst)
    max_diff = float(np.max(diff)) if finite else float("nan")
    mean_diff = float(np.mean(diff)) if finite else float("nan")
    if finite and max_diff > tolerance:
        worst = int(np.argmax(diff))
        reasons.append(
            f"score differs by {max_diff:.4f} (> {tolerance:g}) on image {worst} "
            f"({np.sum(diff > tolerance)} of {ref.size} images over the tolerance)"
        )

    flipped, compared = misranked_pairs(ref, tst, tolerance) if finite else (0, 0)
    if flipped:
        reasons.append(
            f"{flipped} of {compared} image pairs whose reference scores differ by more than "
            f"{tolerance:g} are ranked the other way"
        )

    if ref_saliency is not None and test_saliency is not None:
        if len(ref_saliency) != ref.size or len(test_saliency) != ref.size:
            raise ValueError("saliency maps must come one per score")
        cc = saliency_correlations(ref_saliency, test_saliency)
        cc_ok = bool(np.isfinite(cc).all())
        min_cc = float(np.min(cc)) if cc_ok else float("nan")
        median_cc = float(np.median(cc)) if cc_ok else float("nan")
        if not cc_ok:
            reasons.append("saliency maps contain NaN or inf")
        elif min_cc < min_saliency_cc:
            reasons.append(
                f"saliency correlation {min_cc:.4f} (< {min_saliency_cc:g}) on image "
                f"{int(np.argmin(cc))} ({np.sum(cc < min_saliency_cc)} of {cc.size} below)"
            )
    else:
        # A model without a saliency output has nothing to disagree on here.
        min_cc = median_cc = 1.0

    return ParityReport(
        images=int(ref.size),
        max_score_diff=max_diff,
        mean_score_diff=mean_diff,
        misranked_pairs=flipped,
        compared_pairs=compared,
        min_saliency_cc=min_cc,
        median_saliency_cc=median_cc,
        tolerance=float(tolerance),
        min_saliency_cc_required=float(min_saliency_cc),
        passed=not reasons,
        reasons=reasons,
    )
