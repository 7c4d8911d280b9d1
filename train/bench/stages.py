"""Preprocessing and end-to-end timings of ``saliq bench``: one frame per call.

**Preprocessing** of one 1080p and one 4K uint8 BGR frame (the 4K one is the 1080p scene
upscaled: the cost does not depend on the content): the native CPU twin, the CUDA kernel
(host in/host out, and into device arrays timed by CUDA events) where it is built and a GPU
is present, and the NumPy/OpenCV reference implementation (``implementation="python"``).

**End to end**, batch 1, per passing backend: from the uint8 1080p and 4K frames and from a
1080p JPEG file (decoded by saliq's image reader) to a score on the host. PyTorch on CUDA
uses the CUDA kernel when it is built (the frame goes up once, the model reads the kernel's
device outputs); the others use the native CPU twin, as ``assess()`` does.

Each set is timed interleaved, like the network's latency (:mod:`saliq.train.bench.latency`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saliq.bench.machine import torch_cuda_usable
from saliq.bench.report import StageRow, one_line_error
from saliq.bench.timer import CudaEventTimer, IntervalTimer, WallTimer, measure_ms, time_rounds
from saliq.spec import ModelSpec

from .plans import Plan
from .settings import BenchSettings

FRAME_SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840)}
JPEG_QUALITY = 95


@dataclass
class _Calls:
    """One interleaved set: per key, the call, its timer and its row's (name, input, via)."""

    fns: dict[str, Callable[[], object]] = field(default_factory=dict)
    timers: dict[str, IntervalTimer] = field(default_factory=dict)
    labels: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def add(
        self,
        key: str,
        fn: Callable[[], object],
        timer: IntervalTimer,
        label: tuple[str, str, str],
    ) -> None:
        self.fns[key], self.timers[key], self.labels[key] = fn, timer, label


def bench_frames() -> dict[str, np.ndarray]:
    """One 1080p and one 4K uint8 BGR frame (the 4K frame is the 1080p one upscaled:
    preprocessing cost does not depend on the content)."""
    import cv2

    from saliq.frames import pristine_frames

    frame = pristine_frames(1, FRAME_SIZES["1080p"], order="BGR")[0]
    height, width = FRAME_SIZES["4K"]
    return {
        "1080p": frame,
        "4K": cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR),
    }


def time_stages(
    plans: list[Plan], spec: ModelSpec, settings: BenchSettings, workdir: Path, log: Callable
) -> tuple[list[StageRow], list[StageRow]]:
    """Preprocessing rows (one frame per call) and end-to-end rows (one frame to a score)."""
    import cv2

    from saliq.preprocess import Preprocessor

    frames = bench_frames()
    jpeg = workdir / "frame_1080p.jpg"
    cv2.imwrite(str(jpeg), frames["1080p"], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    native = Preprocessor.from_spec(spec)
    native_name = "native-cpu" if native.uses_native else "python (native not built)"
    reference = Preprocessor.from_spec(spec, implementation="python")
    host = {native_name: native, "opencv-reference": reference}
    gpu_pre = _cuda_preprocessing(spec)
    torch = sys.modules.get("torch") if torch_cuda_usable() else None
    calls = _preprocessing_calls(spec, frames, host, gpu_pre, torch)
    preprocessing = _time_calls(calls, settings, log, "preprocessing")
    calls = _end_to_end_calls(plans, spec, frames, jpeg, (native_name, native), gpu_pre, torch)
    end_to_end = _time_calls(calls, settings, log, "end to end")
    return preprocessing, end_to_end


def _preprocessing_calls(
    spec: ModelSpec,
    frames: dict[str, np.ndarray],
    host: dict[str, Any],
    gpu_pre: Any,
    torch: Any,
) -> _Calls:
    calls = _Calls()
    for size, frame in frames.items():
        for name, pre in host.items():
            calls.add(
                f"{name} @ {size}",
                lambda p=pre, f=frame: p([f], fmt="BGR"),
                WallTimer(),
                (name, size, "host in, host out"),
            )
        if gpu_pre is None:
            continue
        calls.add(
            f"cuda-kernel @ {size}",
            lambda f=frame: gpu_pre.cuda([f], fmt="BGR"),
            WallTimer(),
            ("cuda-kernel", size, "host in, host out (synchronised)"),
        )
        if torch is not None:
            buffers = _device_buffers(spec, torch)
            calls.add(
                f"cuda-kernel-device @ {size}",
                lambda f=frame, b=buffers: gpu_pre.cuda(
                    [f], fmt="BGR", stream=torch.cuda.current_stream(), out=b
                ),
                CudaEventTimer(),
                ("cuda-kernel", size, "host frame in, device outputs"),
            )
    return calls


def _end_to_end_calls(
    plans: list[Plan],
    spec: ModelSpec,
    frames: dict[str, np.ndarray],
    jpeg: Path,
    native: tuple[str, Any],
    gpu_pre: Any,
    torch: Any,
) -> _Calls:
    from saliq.imageio import read_image

    native_name, pre = native
    calls = _Calls()
    for plan in plans:
        runner = plan.runner
        if runner is None or not plan.result.timeable or plan.max_batch < 1:
            continue
        name = plan.result.name
        sync = runner.synchronize if plan.result.device == "cuda" else None
        device_path = (
            plan.result.runtime == "torch"
            and plan.result.device == "cuda"
            and gpu_pre is not None
            and torch is not None
        )
        if device_path:
            buffers = _device_buffers(spec, torch)
            if not set(spec.inputs) <= set(buffers):
                device_path = False
        for size, frame in frames.items():
            if device_path:

                def fn(f=frame, r=runner, b=buffers) -> float:
                    gpu_pre.cuda([f], fmt="BGR", stream=torch.cuda.current_stream(), out=b)
                    out = r.run_prepared({k: b[k] for k in spec.inputs})
                    return float(out["score"].float().cpu()[0])

                via = "uint8 frame, CUDA kernel preprocessing"
            else:

                def fn(f=frame, r=runner) -> float:
                    return float(r.infer(_inputs(pre([f], fmt="BGR"), spec))["score"][0])

                via = f"uint8 frame, {native_name} preprocessing"
            calls.add(f"{name} @ {size}", fn, WallTimer(sync), (name, f"uint8 {size}", via))

        def from_jpeg(r=runner) -> float:
            pixels, fmt = read_image(jpeg)
            return float(r.infer(_inputs(pre([pixels], fmt=fmt), spec))["score"][0])

        calls.add(
            f"{name} @ JPEG",
            from_jpeg,
            WallTimer(sync),
            (name, "JPEG 1080p", f"decode (OpenCV) + {native_name} preprocessing"),
        )
    return calls


def _time_calls(calls: _Calls, settings: BenchSettings, log: Callable, what: str) -> list[StageRow]:
    """Warm every call up (one that raises becomes an error row), then time the rest
    interleaved."""
    rows: list[StageRow] = []
    working: dict[str, Callable[[], object]] = {}
    round_ms = 0.0
    for key, fn in calls.fns.items():
        name, size, via = calls.labels[key]
        try:
            round_ms += measure_ms(WallTimer(), fn)  # first call: also the warm-up's start
            for _ in range(max(0, settings.warmup - 1)):
                fn()
        except Exception as exc:
            nan = float("nan")
            clock = calls.timers[key].clock_name
            rows.append(
                StageRow(name, size, via, 0, nan, nan, nan, clock, error=one_line_error(exc))
            )
            continue
        working[key] = fn
    if working:
        runs = settings.runs_within_budget(round_ms, len(working))
        log(f"  {what}: {len(working)} calls x {runs} interleaved runs")
        timers = {k: calls.timers[k] for k in working}
        timings = time_rounds(working, timers, runs=runs, warmup=0)
        for key, timing in timings.items():
            name, size, via = calls.labels[key]
            rows.append(StageRow.from_timing(name, size, via, timing, timers[key].clock_name))
    return rows


def _inputs(outputs: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    return {name: outputs[name] for name in spec.inputs}


def _cuda_preprocessing(spec: ModelSpec) -> Any:
    """The Preprocessor when its CUDA kernel can run here, else None."""
    from saliq.preprocess import Preprocessor, native_module

    native = native_module()
    if native is None or not getattr(native, "built_with_cuda", False):
        return None
    try:
        if not native.cuda_available():
            return None
    except Exception:
        return None
    return Preprocessor.from_spec(spec)


def _device_buffers(spec: ModelSpec, torch: Any, batch: int = 1) -> dict[str, Any]:
    """Device arrays for every output of the CUDA preprocessing (``Preprocessor.cuda(out=)``)."""
    from saliq.device_pipeline import written_outputs

    return {
        name: torch.empty((batch, *shape), dtype=torch.float32, device="cuda")
        for name, shape in written_outputs(spec).items()
    }


__all__ = ["FRAME_SIZES", "JPEG_QUALITY", "bench_frames", "time_stages"]
