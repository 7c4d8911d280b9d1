"""The one latency timer: warm-up, N timed calls, statistics of the wall times.

``perf_counter_ns`` around each call (integer nanoseconds: no float rounding of the clock).
On a GPU the call returns before the device finishes, so pass ``synchronize`` (e.g.
``torch.cuda.synchronize`` or a stream's ``synchronize``): it is called after the warm-up,
and inside every timed interval after the call, so a time covers the work it launched.

``saliq bench`` times several calls side by side with one interval timer each
(:func:`time_rounds`): :class:`WallTimer` (the clock above) or :class:`CudaEventTimer`
(CUDA events recorded on the current stream around the call: the device's own time for the
work the call queued, without the host's launch jitter).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

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
    p99_ms: float = float("nan")  # added for saliq bench; NaN where a caller built it without

    @property
    def p50_ms(self) -> float:
        return self.median_ms

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"median {self.median_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, min {self.min_ms:.3f} "
            f"ms, max {self.max_ms:.3f} ms over {self.runs} runs ({self.warmup} warm-up)"
        )


def percentiles(samples: list[float] | np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Percentiles ``qs`` (0-100) of ``samples``, linear interpolation between closest ranks
    (NumPy's default, the "type 7" of Hyndman & Fan): p50 of 1..100 is 50.5, p99 is 99.01.

    With fewer than 100 samples p99 interpolates between the two largest, so it is close to
    the maximum: ``saliq bench`` reports the run count beside it.
    """
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("percentiles need at least one sample")
    if any(not 0 <= q <= 100 for q in qs):
        raise ValueError(f"percentiles must lie in [0, 100], got {qs}")
    return [float(v) for v in np.percentile(values, qs)]


def timing_from_ns(samples_ns: list[int] | np.ndarray, warmup: int = 0) -> Timing:
    """Statistics of raw per-call durations in nanoseconds (percentiles: linear interpolation)."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.ndim != 1 or ms.size == 0:
        raise ValueError("timing needs at least one sample")
    p50, p90, p99 = percentiles(ms, (50, 90, 99))
    return Timing(
        runs=int(ms.size),
        warmup=int(warmup),
        median_ms=p50,
        p90_ms=p90,
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        p99_ms=p99,
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


class WallTimer:
    """Host wall clock around one call; ``synchronize`` (GPU work) runs inside the interval."""

    clock_name = "wall"

    def __init__(
        self,
        synchronize: Callable[[], object] | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self.synchronize = synchronize
        self.clock = clock

    def measure(self, fn: Callable[[], object]) -> int:
        """Nanoseconds from before ``fn`` until its work is done."""
        start = self.clock()
        fn()
        if self.synchronize is not None:
            self.synchronize()
        return self.clock() - start

    def settle(self) -> None:
        """Wait for queued work (after a warm-up)."""
        if self.synchronize is not None:
            self.synchronize()


class CudaEventTimer:
    """CUDA events recorded on the current stream before and after the call.

    The interval is the device's time from the first event to the second: everything the
    call queued on that stream in between, launch gaps included, host-side Python before
    the first launch not. The end event is waited for before the next call, so calls do not
    overlap (latency, not pipelined throughput). ``new_event`` makes an object with
    ``record()``, ``synchronize()`` and ``elapsed_time(end) -> ms`` (default:
    ``torch.cuda.Event(enable_timing=True)``, imported when first needed).
    """

    clock_name = "cuda_events"

    def __init__(
        self,
        new_event: Callable[[], Any] | None = None,
        synchronize: Callable[[], object] | None = None,
    ) -> None:
        if new_event is None:
            import torch

            def new_event() -> Any:
                return torch.cuda.Event(enable_timing=True)

            synchronize = synchronize or torch.cuda.synchronize
        self.new_event = new_event
        self.synchronize = synchronize

    def measure(self, fn: Callable[[], object]) -> int:
        start, end = self.new_event(), self.new_event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return round(float(start.elapsed_time(end)) * 1e6)

    def settle(self) -> None:
        if self.synchronize is not None:
            self.synchronize()


IntervalTimer = WallTimer | CudaEventTimer


def measure_ms(timer: IntervalTimer, fn: Callable[[], object]) -> float:
    """One call of ``fn`` measured by ``timer``, in milliseconds."""
    return timer.measure(fn) / 1e6


def time_rounds(
    fns: Mapping[str, Callable[[], object]],
    timers: Mapping[str, IntervalTimer] | IntervalTimer | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = 1,
) -> dict[str, Timing]:
    """:func:`time_interleaved` with one interval timer per call (wall clock by default).

    Each round calls every function once, in turn, each measured by its own timer, so a
    CPU runtime timed by the wall clock and a GPU one timed by CUDA events share the same
    rounds and the same machine load.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs}, {warmup}")
    if timers is None or isinstance(timers, (WallTimer, CudaEventTimer)):
        shared = timers or WallTimer()
        per_call: dict[str, IntervalTimer] = dict.fromkeys(fns, shared)
    else:
        missing = set(fns) - set(timers)
        if missing:
            raise ValueError(f"no timer for {sorted(missing)}")
        per_call = {name: timers[name] for name in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for timer in {id(t): t for t in per_call.values()}.values():
        timer.settle()  # warm-up work still queued must not land in round 1
    samples: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            samples[name].append(per_call[name].measure(fn))
    return {name: timing_from_ns(values, warmup) for name, values in samples.items()}


__all__ = [
    "DEFAULT_RUNS",
    "DEFAULT_WARMUP",
    "CudaEventTimer",
    "IntervalTimer",
    "Timing",
    "WallTimer",
    "measure_ms",
    "percentiles",
    "time_call",
    "time_interleaved",
    "time_rounds",
    "timing_from_ns",
]
