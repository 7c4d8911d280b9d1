"""Peak memory of a backend's calls, measured apart from its timed runs.

tracemalloc slows Python allocations down, so ``saliq bench`` measures memory in a pass of
its own after the timed rounds. CPU: the process's resident-set high-water mark during the
calls (Linux resets it through ``/proc/self/clear_refs``; elsewhere it is the process's
lifetime peak, and ``scope`` says so), its rise above the idle process, and the peak of
Python-tracked allocations (NumPy arrays). PyTorch on CUDA: ``torch.cuda.max_memory_allocated``.
ONNX Runtime and TensorRT allocate GPU memory outside torch: not visible here, left empty.
"""

from __future__ import annotations

import re
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .plans import Plan


def measure_peak_memory(plan: Plan, fn: Callable[[], object], calls: int = 2) -> dict[str, Any]:
    """Peak memory of ``calls`` calls of ``fn`` (the plan's prepared call); see the module
    docstring for what each kind means."""
    if plan.result.device == "cuda":
        return _cuda_peak(plan, fn, calls)
    scope = "calls" if _reset_rss_peak() else "process lifetime"
    idle = _rss("VmRSS")
    tracemalloc.start()
    try:
        for _ in range(calls):
            fn()
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak = _rss("VmHWM")
    return {
        "kind": "rss",
        "bytes": peak,
        "above_idle_bytes": None if peak is None or idle is None else max(0, peak - idle),
        "python_peak_bytes": int(python_peak),
        "scope": scope,
        "source": "/proc/self/status VmHWM + tracemalloc",
    }


def _cuda_peak(plan: Plan, fn: Callable[[], object], calls: int) -> dict[str, Any]:
    if plan.result.runtime != "torch":
        return {
            "kind": "cuda",
            "bytes": None,
            "source": "not visible to torch's allocator (the runtime allocates its own)",
        }
    import torch

    assert plan.runner is not None
    plan.runner.synchronize()
    torch.cuda.reset_peak_memory_stats()
    idle = torch.cuda.memory_allocated()
    for _ in range(calls):
        fn()
    plan.runner.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {
        "kind": "cuda",
        "bytes": int(peak),
        "above_idle_bytes": int(peak - idle),
        "source": "torch.cuda.max_memory_allocated",
    }


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset the peak RSS (Linux 4.0+)
        return True
    except OSError:
        return False


def _rss(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        match = None
    if match:
        return int(match.group(1)) * 1024
    if key == "VmHWM":
        try:
            import resource

            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale
        except (ImportError, OSError):
            return None
    return None


__all__ = ["measure_peak_memory"]
