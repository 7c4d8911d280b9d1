"""The one comparator: does a test runtime reproduce a reference runtime on the same inputs?

Pure NumPy, so it is tested everywhere although what it guards (TensorRT engines, FP16
graphs) only runs on a GPU. Given the outputs of both runtimes on the same preprocessed
frames, keyed by the model's output names, a test runtime passes when:

1. every ``score`` is within ``tolerance`` of the reference score (scores live in [0, 1]);
2. no pair the reference separates by more than ``tolerance`` is ranked the other way
   (closer pairs may swap: within the tolerance they are a tie by rule 1's standard);
3. every map-shaped output (``saliency``, and any other output whose per-sample shape has
   two or more axes) correlates, per image (Pearson), at least ``min_map_cc`` with the
   reference map. A flat map on both sides counts as identical (CC 1); a flat map on one
   side only cannot correlate and counts as 0.

4. every other output (vectors such as class logits) is within ``tolerance`` times
   max(1, its largest reference magnitude) everywhere.

Any NaN or inf in any output fails: a non-finite output is never "close enough".

:func:`absolute_parity` is the gate for an untrained (random-weight) model, whose scores
crowd together and whose maps have no structure, so ranks and correlations mean nothing
there: it checks absolute differences alone (every output within ``tolerance`` times
max(1, its largest reference magnitude)). :func:`spearman` gives the SRCC ``saliq bench``
reports beside the gate for trained models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..spec import SALIENCY, SCORE, ModelSpec
from .runners import Runner, run_batched

DEFAULT_TOLERANCE = 0.01
DEFAULT_MIN_SALIENCY_CC = 0.99
DEFAULT_MIN_MAP_CC = DEFAULT_MIN_SALIENCY_CC
# Below this standard deviation a map is treated as flat: fp16 noise on a constant map
# would otherwise produce an arbitrary correlation.
FLAT_STD = 1e-6
MAP_AXES = 2  # per-sample axes from which an output is a map (saliency: (1, h, w))


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_score_diff: float
    mean_score_diff: float
    misranked_pairs: int
    compared_pairs: int  # pairs whose reference scores differ by more than the tolerance
    min_saliency_cc: float  # lowest CC over every map-shaped output (1.0 when there is none)
    median_saliency_cc: float
    tolerance: float
    min_saliency_cc_required: float
    passed: bool
    reasons: list[str] = field(default_factory=list)
    # Per map-shaped output: {"min_cc", "median_cc"}; per compared output: max |difference|.
    maps: dict[str, dict[str, float]] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    mean_abs_diff: dict[str, float] = field(default_factory=dict)  # per compared output
    gate: str = "full"  # "full" (compare_outputs) or "absolute" (absolute_parity)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.reasons)
        maps = (
            ", ".join(
                f"{name} CC min {m['min_cc']:.4f} median {m['median_cc']:.4f}"
                for name, m in self.maps.items()
            )
            or "no maps"
        )
        return (
            f"parity on {self.images} images: max |score diff| {self.max_score_diff:.2e} "
            f"(mean {self.mean_score_diff:.2e}, tolerance {self.tolerance:g}), misranked "
            f"pairs {self.misranked_pairs}/{self.compared_pairs}, {maps} -> {verdict}"
        )


def saliency_correlations(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Pearson CC per image between two [N, ...] stacks of maps (float64 arithmetic)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    tst = np.asarray(test, dtype=np.float64).reshape(len(test), -1)
    if ref.shape != tst.shape:
        raise ValueError(f"map shapes differ: {np.shape(reference)} vs {np.shape(test)}")
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


def map_outputs(outputs: Mapping[str, np.ndarray], spec: ModelSpec | None = None) -> list[str]:
    """The map-shaped outputs: per-sample shape with >= 2 axes (from the spec when given)."""
    names = []
    for name, value in outputs.items():
        if spec is not None and name in spec.outputs:
            per_sample = len(spec.tensor_shape(name))
        else:
            per_sample = np.ndim(value) - 1
        if per_sample >= MAP_AXES:
            names.append(name)
    return names


def _check_thresholds(tolerance: float, min_map_cc: float) -> None:
    if not tolerance > 0 or not 0 < min_map_cc <= 1:
        raise ValueError(
            f"tolerance must be > 0 and the minimum map CC in (0, 1], got {tolerance}, {min_map_cc}"
        )


def _check_same_outputs(
    reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray]
) -> None:
    """Both sides returned the same outputs, a score among them: else nothing compares."""
    if set(reference) != set(test):
        raise ValueError(
            f"the runtimes returned different outputs: {sorted(reference)} vs {sorted(test)}"
        )
    if SCORE not in reference:
        raise ValueError(f"no {SCORE!r} output to compare among {sorted(reference)}")


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    tolerance: float = DEFAULT_TOLERANCE,
    min_map_cc: float = DEFAULT_MIN_MAP_CC,
    spec: ModelSpec | None = None,
    maps: Sequence[str] | None = None,
) -> ParityReport:
    """Compare every output of ``test`` with ``reference``; see the module docstring.

    Both map output names to ``[N, ...]`` arrays for the same N frames (as runners return
    them). Which outputs are maps: ``maps`` if given, else the ``spec``'s per-sample
    shapes, else the arrays' rank.
    """
    _check_thresholds(tolerance, min_map_cc)
    _check_same_outputs(reference, test)
    ref = np.asarray(reference[SCORE], dtype=np.float64).ravel()
    tst = np.asarray(test[SCORE], dtype=np.float64).ravel()
    if ref.shape != tst.shape or ref.size == 0:
        raise ValueError(f"score arrays must be non-empty and equal: {ref.shape} vs {tst.shape}")
    for name in reference:
        if len(reference[name]) != ref.size or len(test[name]) != ref.size:
            raise ValueError(f"output {name!r} must come one per score ({ref.size} frames)")
        if np.shape(reference[name]) != np.shape(test[name]):
            raise ValueError(
                f"output {name!r} shapes differ: {np.shape(reference[name])} vs "
                f"{np.shape(test[name])}"
            )
    reasons: list[str] = []
    max_abs: dict[str, float] = {}
    mean_abs = _mean_abs_diffs(reference, test)

    finite = bool(np.isfinite(ref).all() and np.isfinite(tst).all())
    if not finite:
        reasons.append("scores contain NaN or inf")
    diff = np.abs(ref - tst)
    max_diff = float(np.max(diff)) if finite else float("nan")
    mean_diff = float(np.mean(diff)) if finite else float("nan")
    max_abs[SCORE] = max_diff
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

    map_names = list(maps) if maps is not None else map_outputs(reference, spec)
    if SCORE in map_names or set(map_names) - set(reference):
        raise ValueError(f"maps {map_names} must name non-score outputs of {sorted(reference)}")
    map_stats: dict[str, dict[str, float]] = {}
    for name in reference:
        if name == SCORE:
            continue
        r = np.asarray(reference[name], dtype=np.float64)
        t = np.asarray(test[name], dtype=np.float64)
        ok = bool(np.isfinite(r).all() and np.isfinite(t).all())
        max_abs[name] = float(np.abs(r - t).max()) if ok and r.size else float("nan")
        if name not in map_names:
            # Vectors (logits, per-image measures): within the tolerance relative to the
            # reference's magnitude (at least 1, as scores live in [0, 1]).
            if not ok:
                reasons.append(f"{name} contains NaN or inf")
            elif r.size:
                allowed = tolerance * max(1.0, float(np.abs(r).max()))
                if max_abs[name] > allowed:
                    reasons.append(
                        f"{name} differs by {max_abs[name]:.4g} (> {allowed:.4g}, the "
                        f"tolerance relative to its largest reference value)"
                    )
            continue
        if not ok:
            reasons.append(f"{name} maps contain NaN or inf")
            map_stats[name] = {"min_cc": float("nan"), "median_cc": float("nan")}
            continue
        cc = saliency_correlations(r, t)
        min_cc, median_cc = float(np.min(cc)), float(np.median(cc))
        map_stats[name] = {"min_cc": min_cc, "median_cc": median_cc}
        if min_cc < min_map_cc:
            reasons.append(
                f"{name} correlation {min_cc:.4f} (< {min_map_cc:g}) on image "
                f"{int(np.argmin(cc))} ({np.sum(cc < min_map_cc)} of {cc.size} below)"
            )

    if map_stats:
        lows = [m["min_cc"] for m in map_stats.values()]
        mids = [m["median_cc"] for m in map_stats.values()]
        finite_maps = all(np.isfinite(lows))
        min_cc = float(min(lows)) if finite_maps else float("nan")
        median_cc = float(min(mids)) if finite_maps else float("nan")
    else:
        # A model without map outputs has nothing to disagree on here.
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
        min_saliency_cc_required=float(min_map_cc),
        passed=not reasons,
        reasons=reasons,
        maps=map_stats,
        max_abs_diff=max_abs,
        mean_abs_diff=mean_abs,
    )


def _mean_abs_diffs(
    reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Mean |reference - test| per output (NaN where either side is not finite)."""
    means = {}
    for name in reference:
        r = np.asarray(reference[name], dtype=np.float64)
        t = np.asarray(test[name], dtype=np.float64)
        ok = r.size and bool(np.isfinite(r).all() and np.isfinite(t).all())
        means[name] = float(np.abs(r - t).mean()) if ok else float("nan")
    return means


def absolute_parity(
    reference: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    tolerance: float,
) -> ParityReport:
    """The gate on absolute differences alone (untrained models; see the module docstring).

    Every output passes when finite and within ``tolerance`` times max(1, its largest
    reference magnitude) everywhere; ranks and map correlations are not gated (reported as
    NaN: not measured).
    """
    _check_thresholds(tolerance, DEFAULT_MIN_MAP_CC)
    _check_same_outputs(reference, test)
    images = len(np.asarray(reference[SCORE]).ravel())
    reasons: list[str] = []
    max_abs: dict[str, float] = {}
    for name in reference:
        r = np.asarray(reference[name], dtype=np.float64)
        t = np.asarray(test[name], dtype=np.float64)
        if r.shape != t.shape or not r.size:
            raise ValueError(f"output {name!r} shapes differ or are empty: {r.shape} vs {t.shape}")
        if not (np.isfinite(r).all() and np.isfinite(t).all()):
            max_abs[name] = float("nan")
            reasons.append(f"{name} contains NaN or inf")
            continue
        diff = np.abs(r - t)
        max_abs[name] = float(diff.max())
        allowed = tolerance * max(1.0, float(np.abs(r).max()))
        if max_abs[name] > allowed:
            worst = int(np.unravel_index(int(np.argmax(diff)), diff.shape)[0])
            reasons.append(
                f"{name} differs by {max_abs[name]:.3g} (> {allowed:.3g}) on image {worst}"
            )
    mean_abs = _mean_abs_diffs(reference, test)
    nan = float("nan")
    return ParityReport(
        images=images,
        max_score_diff=max_abs[SCORE],
        mean_score_diff=mean_abs[SCORE],
        misranked_pairs=0,
        compared_pairs=0,
        min_saliency_cc=nan,
        median_saliency_cc=nan,
        tolerance=float(tolerance),
        min_saliency_cc_required=nan,
        passed=not reasons,
        reasons=reasons,
        max_abs_diff=max_abs,
        mean_abs_diff=mean_abs,
        gate="absolute",
    )


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties get their average rank); NaN when either side is
    constant or not finite (no ranking to compare)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"spearman needs equal lengths, got {x.size} and {y.size}")
    if x.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = float(np.sqrt((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(values.size, dtype=np.float64)
    sorted_values = values[order]
    # Runs of equal values share the mean of their ranks.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    for start, end in zip(starts, ends):
        if end - start > 1:
            ranks[order[start:end]] = (start + end - 1) / 2.0
    return ranks


def parity_report(
    ref_scores: np.ndarray,
    ref_saliency: np.ndarray | None,
    test_scores: np.ndarray,
    test_saliency: np.ndarray | None,
    tolerance: float = DEFAULT_TOLERANCE,
    min_saliency_cc: float = DEFAULT_MIN_SALIENCY_CC,
) -> ParityReport:
    """:func:`compare_outputs` for the usual score (+ saliency map) pair of outputs."""
    _check_thresholds(tolerance, min_saliency_cc)
    if (ref_saliency is None) != (test_saliency is None):
        raise ValueError("pass saliency for both runtimes or for neither")
    reference: dict[str, np.ndarray] = {SCORE: np.asarray(ref_scores)}
    test: dict[str, np.ndarray] = {SCORE: np.asarray(test_scores)}
    if ref_saliency is not None and test_saliency is not None:
        reference[SALIENCY] = np.asarray(ref_saliency)
        test[SALIENCY] = np.asarray(test_saliency)
    maps = [SALIENCY] if SALIENCY in reference else []
    return compare_outputs(reference, test, tolerance, min_saliency_cc, maps=maps)


def compare_runners(
    reference: Runner,
    test: Runner,
    feeds: Mapping[str, np.ndarray],
    tolerance: float = DEFAULT_TOLERANCE,
    min_map_cc: float = DEFAULT_MIN_MAP_CC,
    max_batch: int = 16,
    test_max_batch: int | None = None,
    spec: ModelSpec | None = None,
) -> ParityReport:
    """Run both runners over ``feeds`` (chunked) and compare what they return.

    ``test_max_batch`` caps the test runner's chunks separately (an engine's profile);
    ``spec`` defaults to the reference runner's.
    """
    opened = [r for r in (reference, test) if not r.is_active]
    try:
        for runner in opened:
            runner.activate()
        ref_out = run_batched(reference, feeds, max_batch)
        test_out = run_batched(test, feeds, test_max_batch or max_batch)
        spec = spec or reference.spec or test.spec
    finally:
        for runner in opened:
            runner.deactivate()
    return compare_outputs(ref_out, test_out, tolerance, min_map_cc, spec=spec)


__all__ = [
    "DEFAULT_MIN_MAP_CC",
    "DEFAULT_MIN_SALIENCY_CC",
    "DEFAULT_TOLERANCE",
    "FLAT_STD",
    "ParityReport",
    "absolute_parity",
    "compare_outputs",
    "compare_runners",
    "map_outputs",
    "misranked_pairs",
    "parity_report",
    "saliency_correlations",
    "spearman",
]
