"""Which backends one ``saliq bench`` run can run here, as :class:`Plan`s, and opening them.

A plan is one row of the table before it runs: its :class:`~saliq.bench.report.BackendResult`
(name, runtime, device, precision, status) and a factory for its runner. What exists depends
on the model's artifacts and on what is installed: PyTorch fp32 on the CPU (the reference)
and fp32/fp16/bf16/``torch.compile`` on a CUDA GPU; ONNX Runtime per execution provider;
TensorRT per engine. What is absent is a note saying why; a runtime that is installed but
cannot open is a row (skipped or error), never a crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saliq.bench.machine import onnxruntime_providers, torch_cuda_usable
from saliq.bench.report import ERROR, PASSED, REFERENCE, SKIPPED, BackendResult, one_line_error
from saliq.bench.runners import BackendRunner, OnnxRuntimeRunner, Runner, TorchModuleRunner
from saliq.errors import BackendUnavailableError, ConfigError, SaliqError
from saliq.spec import ModelSpec

from .models import ModelArtifacts, torch_module
from .settings import BenchSettings

ORT_PROVIDERS = {  # backend name -> (provider, device, precision it computes in by default)
    "onnxruntime-cpu": ("CPUExecutionProvider", "cpu", "fp32"),
    # cuDNN convolutions and TensorRT layers may use TF32 on Ampere and newer unless told not
    # to: these are gated as tf32.
    "onnxruntime-cuda": ("CUDAExecutionProvider", "cuda", "tf32"),
    "onnxruntime-tensorrt": ("TensorrtExecutionProvider", "cuda", "tf32"),
}
DEVICES = {"auto": ("cpu", "cuda"), "cpu": ("cpu",), "cuda": ("cuda",)}  # --device -> kept


@dataclass
class Plan:
    """One backend to run: its row, how to make its runner, how to time it."""

    result: BackendResult
    make: Callable[[], Runner]
    clock: str = "wall"
    io: str = "host"
    max_batch: int = 256
    runner: Runner | None = None
    expect_provider: str | None = None  # ONNX Runtime: the provider that must be active
    timed: bool = True  # False: the reference on a device --device left out (parity only)


def build_plans(
    artifacts: ModelArtifacts, settings: BenchSettings
) -> tuple[Plan, list[Plan], list[str]]:
    """(the reference plan, every plan including it, notes on what is absent and why)."""
    notes: list[str] = []
    module = torch_module(artifacts)
    ort = onnxruntime_providers() if artifacts.onnx is not None else []
    devices = DEVICES[settings.device]
    plans: list[Plan] = []
    if module is not None:
        plans += _torch_plans(module, artifacts.spec, devices, notes)
    if artifacts.onnx is not None:
        plans += _onnxruntime_plans(
            artifacts.onnx, ort, module is not None, devices, settings, notes
        )
    plans += _tensorrt_plans(artifacts.engines, devices, settings, notes)
    if not any(p.result.runtime == "tensorrt" for p in plans) and (
        "TensorrtExecutionProvider" not in ort
    ):
        notes.append(
            "no TensorRT figure: no engine was given and ONNX Runtime has no TensorRT provider here"
        )
    references = [p for p in plans if p.result.status == REFERENCE]
    for plan in references:
        plan.timed = plan.result.device in devices
    if not references:
        raise ConfigError(
            f"{settings.model}: nothing to compare against: parity needs a checkpoint with "
            "torch, or an ONNX file with onnxruntime (pass --reference model.safetensors|onnx)"
        )
    reference = references[0]
    kept = [p for p in plans if _wanted(p.result.name, settings, reference.result.name)]
    if settings.device == "cuda" and not any(p.result.device == "cuda" for p in kept):
        raise BackendUnavailableError(
            "--device cuda: no CUDA backend is usable here (PyTorch without a CUDA GPU, "
            "onnxruntime without the CUDA/TensorRT providers, no engine given); drop --device"
        )
    return reference, kept, notes


def activate(plan: Plan) -> None:
    """Open the plan's runner; a missing runtime is skipped, a failure is an error."""
    try:
        plan.runner = plan.make().activate()
    except (ImportError, BackendUnavailableError) as exc:
        plan.result.status, plan.result.reason = SKIPPED, one_line_error(exc)
        return
    except Exception as exc:  # a runtime that fails to open is a row, not a crash
        plan.result.status, plan.result.reason = ERROR, one_line_error(exc)
        return
    active = getattr(getattr(plan.runner, "backend", None), "provider", None)
    if plan.expect_provider and active and active != plan.expect_provider:
        plan.result.status = SKIPPED
        plan.result.reason = (
            f"ONNX Runtime fell back to {active} ({plan.expect_provider} "
            "could not start: its CUDA/TensorRT libraries are missing?)"
        )
        close(plan)


def close(plan: Plan) -> None:
    """Release the plan's runner (if open); never raises."""
    if plan.runner is not None:
        with contextlib.suppress(Exception):
            plan.runner.deactivate()
        plan.runner = None


# --- one runtime each ----------------------------------------------------------------------


def _torch_plans(
    module: Any, spec: ModelSpec, devices: tuple[str, ...], notes: list[str]
) -> list[Plan]:
    plans = [
        Plan(
            BackendResult("torch-fp32-cpu", "torch", "cpu", "fp32", REFERENCE),
            lambda: TorchModuleRunner(module, spec, "cpu", "fp32", name="torch-fp32-cpu"),
        )
    ]
    if "cuda" in devices and torch_cuda_usable():
        import torch

        variants = [("fp32", False), ("fp16", False)]
        if torch.cuda.is_bf16_supported():
            variants.append(("bf16", False))
        variants.append(("fp32", True))
        for precision, compiled in variants:
            name = f"torch-{'compile-' if compiled else ''}{precision}-cuda"
            plans.append(
                Plan(
                    BackendResult(name, "torch", "cuda", precision),
                    lambda p=precision, c=compiled, n=name: TorchModuleRunner(
                        module, spec, "cuda", p, compile=c, name=n
                    ),
                    clock="cuda_events",
                    io="device",
                )
            )
    elif "cuda" in devices:
        notes.append("no CUDA GPU usable by PyTorch here: no fp16/bf16/torch.compile rows")
    return plans


def _onnxruntime_plans(
    onnx: Path,
    ort: list[str],
    torch_reference: bool,
    devices: tuple[str, ...],
    settings: BenchSettings,
    notes: list[str],
) -> list[Plan]:
    if not ort:
        notes.append(
            "onnxruntime is not installed: no ONNX Runtime rows "
            "(pip install 'saliq[cpu]', or onnxruntime-gpu)"
        )
    plans = []
    for name, (provider, device, precision) in ORT_PROVIDERS.items():
        # Without torch, ONNX Runtime on the CPU is the reference: it runs whatever
        # --device says (and is timed only when the CPU is wanted).
        status = REFERENCE if not torch_reference and name == "onnxruntime-cpu" else PASSED
        if provider not in ort or (device not in devices and status != REFERENCE):
            continue
        chain = (
            [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        )
        plans.append(
            Plan(
                BackendResult(name, "onnxruntime", device, precision, status),
                lambda chain=chain, n=name: OnnxRuntimeRunner(
                    onnx, providers=chain, threads=settings.threads, name=n
                ),
                expect_provider=provider,
            )
        )
    return plans


def _tensorrt_plans(
    engines: list[Path], devices: tuple[str, ...], settings: BenchSettings, notes: list[str]
) -> list[Plan]:
    if not engines:
        return []
    if "cuda" not in devices:
        notes.append(f"--device {settings.device}: the TensorRT engines were not run")
        return []
    from saliq.engine_sidecar import read_sidecar

    plans = []
    for index, engine in enumerate(engines):
        try:
            sidecar = read_sidecar(engine)
        except SaliqError as exc:
            notes.append(f"engine {engine} not run: {exc}")
            continue
        # TensorRT lets "fp32" engines use TF32 unless the builder's TF32 flag is cleared.
        precision = "tf32" if sidecar.precision == "fp32" else sidecar.precision
        name = f"tensorrt-{sidecar.precision}" + (f"-{index}" if len(engines) > 1 else "")

        def open_engine(path: Path = engine) -> Any:
            from saliq.backends.tensorrt import TensorRTBackend

            return TensorRTBackend(path, allow_engine_host_code=settings.allow_engine_host_code)

        plans.append(
            Plan(
                BackendResult(name, "tensorrt", "cuda", precision, notes=str(engine)),
                lambda f=open_engine, n=name: BackendRunner(f, name=n),
                max_batch=max(p.max_batch for p in sidecar.profiles),
            )
        )
    return plans


def _wanted(name: str, settings: BenchSettings, reference: str) -> bool:
    if name == reference or not settings.backends:
        return True
    return any(name.startswith(prefix) for prefix in settings.backends)


__all__ = ["DEVICES", "ORT_PROVIDERS", "Plan", "activate", "build_plans", "close"]
