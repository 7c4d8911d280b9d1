"""Network latency per backend and batch size, interleaved, for ``saliq bench``.

Inputs are prepared once per batch size (:meth:`saliq.bench.runners.Runner.prepare`: ONNX
Runtime and TensorRT take host arrays and copy them in and out inside the timed call, as
``assess()`` does; PyTorch on CUDA reads device-resident inputs). The first call is timed on
its own (``first_call_ms``: compile, autotune, allocation), the rest of the warm-up untimed,
then the timed runs are **interleaved**: each round calls every backend once, so a load
spike on a shared machine hits all of them alike and their ratios stay meaningful. A row
whose rounds would exceed ``--row-seconds`` per backend gets fewer runs, never fewer than
:data:`~saliq.bench.settings.MIN_RUNS`. PyTorch on CUDA is timed by CUDA events on the
current stream, everything else by the host's wall clock around a call that has finished.
Peak memory comes last, in a pass of its own (:mod:`saliq.train.bench.memory`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from saliq.bench.report import LatencyRow, one_line_error
from saliq.bench.timer import CudaEventTimer, IntervalTimer, WallTimer, measure_ms, time_rounds

from .memory import measure_peak_memory
from .plans import Plan
from .settings import BenchSettings


def time_latency(
    plans: list[Plan], feeds: dict[str, np.ndarray], settings: BenchSettings, log: Callable
) -> list[LatencyRow]:
    """Latency rows for every active plan at every batch size (see the module docstring)."""
    rows: list[LatencyRow] = []
    images = len(next(iter(feeds.values())))
    for batch in settings.batches:
        index = np.arange(batch) % images
        batch_feeds = {name: value[index] for name, value in feeds.items()}
        fns: dict[str, Callable[[], object]] = {}
        timers: dict[str, IntervalTimer] = {}
        first: dict[str, float] = {}
        steady: dict[str, float] = {}
        active = [p for p in plans if p.runner is not None]
        for plan in active:
            name = plan.result.name
            if batch > plan.max_batch:
                log(f"  {name}: batch {batch} is above its engine profile ({plan.max_batch})")
                continue
            runner = plan.runner
            assert runner is not None
            try:
                prepared = runner.prepare(batch_feeds)
                timer = _timer(plan)
                fn = functools.partial(runner.run_prepared, prepared)
                first[name] = measure_ms(WallTimer(runner.synchronize), fn)
                for _ in range(max(0, settings.warmup - 1)):
                    steady[name] = measure_ms(timer, fn)
                steady.setdefault(name, first[name])
            except Exception as exc:
                log(f"  {name} at batch {batch}: {one_line_error(exc)}")
                plan.result.notes = (
                    plan.result.notes + f"; batch {batch}: {one_line_error(exc)}"
                ).lstrip("; ")
                continue
            fns[name], timers[name] = fn, timer
        if not fns:
            continue
        runs = settings.runs_within_budget(sum(steady[n] for n in fns), len(fns))
        log(f"  batch {batch}: {', '.join(fns)} x {runs} interleaved runs")
        by_name = {p.result.name: p for p in active}
        try:
            timings = time_rounds(fns, timers, runs=runs, warmup=0)
        except Exception as exc:  # warmed up, then failed: a note, and the next batch size
            log(f"  batch {batch}: {one_line_error(exc)}")
            for name in fns:
                by_name[name].result.notes += f" batch {batch} timing failed: {one_line_error(exc)}"
            continue
        for name, timing in timings.items():
            plan = by_name[name]
            try:
                memory = measure_peak_memory(plan, fns[name])
            except Exception as exc:
                memory = {"kind": None, "bytes": None, "source": one_line_error(exc)}
            timing = type(timing)(**{**timing.to_dict(), "warmup": settings.warmup})
            rows.append(
                LatencyRow.from_timing(
                    name, batch, timing, timers[name].clock_name, plan.io, first[name], memory
                )
            )
    return rows


def _timer(plan: Plan) -> IntervalTimer:
    runner = plan.runner
    assert runner is not None
    if plan.clock == "cuda_events":
        return CudaEventTimer()
    return WallTimer(synchronize=runner.synchronize if plan.result.device == "cuda" else None)


__all__ = ["time_latency"]
