"""The one latency timer: warm-up, N timed calls, statistics of the wall times.

``perf_counter_ns`` around each call (integer nanoseconds: no float rounding of the clock).
On a GPU the call returns before the device finishes, so pass ``synchronize`` (e.g.
``torch.cuda.synchronize`` or a stream's ``synchronize``): it is called after the warm-up,
and inside every timed interval after the call, so a time covers the work it launched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_WARMUP = 10
DEFAULT_RUNS = 50


@dataclass(frozen=True)
class Timing:
    """Wall-clock statistics of ``runs`` calls, in milliseconds."""

    runs: int
    warmup: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"median {self.median_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, min {self.min_ms:.3f} "
            f"ms, max {self.max_ms:.3f} ms over {self.runs} runs ({self.warmup} warm-up)"
        )


def timing_from_ns(samples_ns: list[int] | np.ndarray, warmup: int = 0) -> Timing:
    """Statistics of raw per-call durations in nanoseconds (p90: linear interpolation)."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.ndim != 1 or ms.size == 0:
        raise ValueError("timing needs at least one sample")
    return Timing(
        runs=int(ms.size),
        warmup=int(warmup),
        median_ms=float(np.median(ms)),
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
    )


def time_call(
    fn: Callable[[], object],
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    synchronize: Callable[[], object] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed; see the module doc."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    if synchronize is not None:
        synchronize()  # warm-up work still queued on the device must not land in run 1
    samples = []
    for _ in range(runs):
        start = clock()
        fn()
        if synchronize is not None:
            synchronize()
        samples.append(clock() - start)
    return timing_from_ns(samples, warmup)


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    runs: int = DEFAULT_RUNS,
    warmup: int = 1,
    synchronize: Callable[[], object] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, Timing]:
    """Time several functions side by side: each round calls every one once, in turn.

    On a shared, noisy machine a load spike then hits all of them alike, so their ratios
    stay meaningful even when the absolute times drift.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs}, {warmup}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    if synchronize is not None:
        synchronize()
    samples: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = clock()
            fn()
            if synchronize is not None:
                synchronize()
            samples[name].append(clock() - start)
    return {name: timing_from_ns(values, warmup) for name, values in samples.items()}


__all__ = [
    "DEFAULT_RUNS",
    "DEFAULT_WARMUP",
    "Timing",
    "time_call",
    "time_interleaved",
    "timing_from_ns",
]
