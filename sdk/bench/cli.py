"""``saliq bench MODEL``: latency and parity against PyTorch fp32, per backend and precision.

MODEL is ``default`` (the shipped model), a registered architecture name (random weights: its
default config, or constructor defaults; ``--model-config``/``--input-size`` shrink it), a
``.safetensors`` checkpoint, an ``.onnx`` file or a TensorRT ``.engine``. One run:

1. resolves the model's artifacts: a checkpoint (PyTorch), an ONNX file (beside it, else
   exported for this run) and any engines; the reference is PyTorch fp32 on the CPU (ONNX
   Runtime on the CPU where no checkpoint or no torch is at hand: the table says so);
2. pins the CPU threads (``--threads``: torch, ONNX Runtime, OpenCV, native preprocessing);
3. runs every backend present on the same real photos and gates it against the reference
   (:mod:`saliq.bench.report`): one that fails is FAILED and not timed;
4. times each passing backend at each batch size, interleaved (each round calls every
   backend once, so load spikes on a shared machine hit all alike): warm-up, then p50/p90/
   p99, throughput and, in a separate pass, peak memory; CUDA events for PyTorch on a GPU;
5. times preprocessing of one 1080p and one 4K frame (native CPU twin, CUDA kernel where
   built and a GPU is present, the NumPy/OpenCV reference implementation), and end to end
   from a uint8 frame and from a JPEG file to a score;
6. prints the table, writes the JSON (atomically) and a PNG when matplotlib is present.

Importing this module imports no runtime and no training code: torch and ``saliq.train`` are
imported only when a checkpoint or an architecture is benchmarked.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import re
import shlex
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, SaliqError
from ..spec import ModelSpec
from . import machine as machine_info
from .report import (
    ERROR,
    FAILED,
    PASSED,
    REFERENCE,
    SKIPPED,
    BackendResult,
    BenchReport,
    LatencyRow,
    StageRow,
    evaluate_parity,
    tolerance_for,
)
from .runners import Runner, run_batched
from .timer import CudaEventTimer, IntervalTimer, WallTimer, time_rounds

HELP = "latency and parity against PyTorch fp32 per backend, precision and batch size"
DEFAULT_BATCHES = (1, 4, 16, 64)
QUICK_BATCHES = (1, 16)
DEFAULT_RUNS, QUICK_RUNS = 30, 8
DEFAULT_WARMUP, QUICK_WARMUP = 5, 2
DEFAULT_PARITY_IMAGES, QUICK_PARITY_IMAGES = 32, 12
DEFAULT_ROW_SECONDS, QUICK_ROW_SECONDS = 20.0, 6.0
MIN_RUNS = 5  # a row never gets fewer timed runs than this, whatever the time budget
PARITY_BATCH = 16  # parity runs in chunks of this many images
FRAME_SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840)}
JPEG_QUALITY = 95
MODEL_SUFFIXES = (".safetensors", ".onnx", ".engine", ".plan")
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")
ORT_PROVIDERS = {  # backend name -> (provider, device, precision it computes in by default)
    "onnxruntime-cpu": ("CPUExecutionProvider", "cpu", "fp32"),
    # cuDNN convolutions and TensorRT layers may use TF32 on Ampere and newer unless told not
    # to: these are gated as tf32.
    "onnxruntime-cuda": ("CUDAExecutionProvider", "cuda", "tf32"),
    "onnxruntime-tensorrt": ("TensorrtExecutionProvider", "cuda", "tf32"),
}


@dataclass
class BenchSettings:
    """Everything a run depends on (the CLI's arguments, resolved)."""

    model: str
    batches: tuple[int, ...] = DEFAULT_BATCHES
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    threads: int = 0  # 0: every CPU this process may use
    parity_images: int = DEFAULT_PARITY_IMAGES
    images: str | None = None  # a folder of the user's photos for parity
    device: str = "auto"  # auto | cpu | cuda
    backends: tuple[str, ...] = ()  # name prefixes to keep (empty: all)
    engines: tuple[str, ...] = ()
    reference: str | None = None  # checkpoint or ONNX to compare against
    output_dir: str | None = None
    plots: bool = True
    stages: bool = True  # preprocessing and end-to-end rows
    time_failed: bool = False
    row_seconds: float = DEFAULT_ROW_SECONDS
    model_config: dict = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    config: str | None = None
    configs_dir: str = "configs"
    allow_engine_host_code: bool = False
    quick: bool = False
    command: str = ""


@dataclass
class ModelArtifacts:
    """The files (or in-memory model) one benchmark runs."""

    kind: str  # default | architecture | checkpoint | onnx | engine
    source: str
    spec: ModelSpec
    checkpoint: Path | None = None
    onnx: Path | None = None
    engines: list[Path] = field(default_factory=list)
    trained: bool | None = None
    module: Any = None  # the torch model (architecture names; checkpoints load lazily)
    notes: list[str] = field(default_factory=list)


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


# --- model resolution ----------------------------------------------------------------------


def _is_file_argument(model: str) -> bool:
    return Path(model).suffix.lower() in MODEL_SUFFIXES or Path(model).is_file()


def _sibling(path: Path, suffix: str) -> Path | None:
    candidate = path.with_suffix(suffix)
    return candidate if candidate.is_file() else None


def _checkpoint_trained(path: Path) -> bool:
    """A checkpoint written by ``saliq train`` carries its metrics; random weights none."""
    from ..checkpoint import read_checkpoint_info

    return bool(read_checkpoint_info(path).metrics)


def _spec_of(path: Path) -> ModelSpec:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from ..checkpoint import load_spec

        return load_spec(path)
    if suffix == ".onnx":
        from ..backends.onnxruntime import read_onnx_spec

        return read_onnx_spec(path)
    from ..engine_sidecar import read_sidecar

    return read_sidecar(path).spec


def _same_model(a: ModelSpec, b: ModelSpec) -> bool:
    return (a.architecture, a.inputs, a.outputs, a.input_height, a.input_width) == (
        b.architecture,
        b.inputs,
        b.outputs,
        b.input_height,
        b.input_width,
    )


def resolve_model(settings: BenchSettings, workdir: Path) -> ModelArtifacts:
    """The artifacts of ``settings.model``; exports what is missing into ``workdir``."""
    name = settings.model
    if name == "default":
        from ..assess import default_model_path

        checkpoint = default_model_path("safetensors")
        artifacts = ModelArtifacts(
            "default",
            'saliq.load("default")',
            _spec_of(checkpoint),
            checkpoint=checkpoint,
            onnx=default_model_path("onnx"),
            trained=_checkpoint_trained(checkpoint),
        )
    elif _is_file_argument(name):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(
                f"{path}: no such model file; pass default, an architecture name, "
                "or an existing .safetensors, .onnx or .engine file"
            )
        suffix = path.suffix.lower()
        if suffix not in MODEL_SUFFIXES:
            raise ConfigError(
                f"{path}: unknown model file type {suffix!r}; pass a .safetensors "
                "checkpoint, an .onnx file or a TensorRT .engine/.plan"
            )
        spec = _spec_of(path)
        kind = {".safetensors": "checkpoint", ".onnx": "onnx"}.get(suffix, "engine")
        artifacts = ModelArtifacts(kind, str(path), spec)
        if kind == "checkpoint":
            artifacts.checkpoint = path
            artifacts.onnx = _sibling(path, ".onnx")
        elif kind == "onnx":
            artifacts.onnx = path
            artifacts.checkpoint = _sibling(path, ".safetensors")
        else:
            artifacts.engines.append(path)
            artifacts.onnx = _sibling(path, ".onnx")
            artifacts.checkpoint = _sibling(path, ".safetensors")
    else:
        artifacts = _architecture(settings, workdir)
    if settings.reference:
        _attach_reference(artifacts, Path(settings.reference))
    for engine in settings.engines:
        artifacts.engines.append(Path(engine))
    for other in (artifacts.checkpoint, artifacts.onnx):
        if other is None or other == Path(name):
            continue
        try:
            other_spec = _spec_of(other)
        except BackendUnavailableError:  # no onnxruntime to read the ONNX: its rows skip
            continue
        if not _same_model(artifacts.spec, other_spec):
            raise ConfigError(
                f"{other} is not the same model as {name} (architecture, inputs, "
                "outputs or input size differ); pass the matching file with "
                "--reference"
            )
    if artifacts.checkpoint is not None and artifacts.trained is None:
        artifacts.trained = _checkpoint_trained(artifacts.checkpoint)
    if artifacts.checkpoint is not None and artifacts.onnx is None:
        if _onnx_wanted(settings):
            artifacts.onnx = _export_onnx(artifacts, workdir)
        else:
            artifacts.notes.append(
                "no ONNX Runtime rows: onnxruntime is not installed, or has no CUDA provider "
                "for --device cuda (pip install 'saliq[cpu]', or onnxruntime-gpu)"
            )
    return artifacts


def _onnx_wanted(settings: BenchSettings) -> bool:
    """Whether an ONNX Runtime backend would run: else exporting one is wasted time."""
    providers = set(_ort_providers())
    if settings.device == "cuda":
        return bool(providers & {"CUDAExecutionProvider", "TensorrtExecutionProvider"})
    return bool(providers)


def _attach_reference(artifacts: ModelArtifacts, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"--reference {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        artifacts.checkpoint = path
        artifacts.trained = None  # read from this checkpoint
    elif suffix == ".onnx":
        artifacts.onnx = path
    else:
        raise ConfigError(f"--reference {path}: pass a .safetensors checkpoint or an .onnx file")


def _architecture(settings: BenchSettings, workdir: Path) -> ModelArtifacts:
    """A registered architecture with random weights (seed 0), saved as a checkpoint."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            f"benchmarking the architecture {settings.model!r} builds it in PyTorch: pip "
            "install torch==2.13.0 'saliq[train]'"
        ) from None
    from saliq.train.checkpoint import save_checkpoint
    from saliq.train.models import backbone_normalisation, create_model, list_models, model_spec

    name = settings.model
    if name not in list_models():
        raise ConfigError(
            f"unknown model {name!r}: pass default, a registered architecture "
            f"({', '.join(list_models())}), or a .safetensors, .onnx or .engine file"
        )
    torch.manual_seed(0)
    config_path = _config_for(name, settings)
    if config_path is not None:
        from saliq.train.config import load_config
        from saliq.train.model_table import build_from_config

        config = load_config(config_path)
        if config.model.architecture != name:
            raise ConfigError(
                f"{config_path} trains {config.model.architecture!r}, not {name!r}; "
                "pass a config of that architecture with --config"
            )
        config.model.kwargs.update(settings.model_config)
        if settings.input_size:
            config.model.input_height, config.model.input_width = settings.input_size
        model, spec = build_from_config(config, name=f"{name}-random-init")
        source = f"{name}, random weights (seed 0), {config_path}"
    else:
        kwargs = dict(settings.model_config)
        model = create_model(name, pretrained=False, **kwargs)
        backbone = kwargs.get("backbone")
        mean, std = backbone_normalisation(backbone) if backbone else ((0.5,) * 3, (0.5,) * 3)
        height, width = settings.input_size or (224, 224)
        spec = model_spec(
            model,
            name=f"{name}-random-init",
            architecture=name,
            backbone=str(backbone or "(constructor default)"),
            input_height=height,
            input_width=width,
            mean=mean,
            std=std,
            model_config=kwargs,
        )
        source = f"{name}, random weights (seed 0), constructor defaults"
    if settings.model_config:
        source += f" + {json.dumps(settings.model_config, sort_keys=True)}"
    model = model.eval()
    checkpoint = save_checkpoint(workdir / f"{name}.safetensors", model, spec, {})
    return ModelArtifacts(
        "architecture", source, spec, checkpoint=checkpoint, trained=False, module=model
    )


def _config_for(name: str, settings: BenchSettings) -> Path | None:
    if settings.config:
        path = Path(settings.config)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        return path
    if not Path(settings.configs_dir).is_dir():
        return None
    from saliq.train.model_table import default_configs

    return default_configs(settings.configs_dir).get(name)


def _export_onnx(artifacts: ModelArtifacts, workdir: Path) -> Path | None:
    """ONNX for a checkpoint without one beside it (verified by the exporter); None, with a
    note, where the exporter cannot run here."""
    assert artifacts.checkpoint is not None
    try:
        from saliq.export.onnx import export_onnx

        report = export_onnx(
            artifacts.checkpoint, workdir / f"{artifacts.checkpoint.stem}.onnx", verify_images=4
        )
    except ImportError as exc:
        artifacts.notes.append(
            f"no ONNX Runtime rows: exporting the checkpoint needs {exc.name or 'onnx'} "
            "(pip install 'saliq[export]')"
        )
        return None
    except SaliqError as exc:
        artifacts.notes.append(f"no ONNX Runtime rows: the ONNX export failed: {exc}")
        return None
    artifacts.notes.append(
        f"ONNX exported from the checkpoint for this run (opset {report.opset}; the exporter's "
        f"own check: max |score diff| {report.max_score_diff:.1e})"
    )
    return Path(report.path)


def _torch_module(artifacts: ModelArtifacts) -> Any:
    """The PyTorch model (loaded from the checkpoint once), or None without torch."""
    if artifacts.module is not None or artifacts.checkpoint is None:
        return artifacts.module
    try:
        import torch  # noqa: F401
    except ImportError:
        artifacts.notes.append(
            "no PyTorch rows: torch is not installed (pip install "
            "torch==2.13.0 'saliq[train]'); reference: ONNX Runtime CPU"
        )
        return None
    from saliq.train.models.contract import model_from_spec

    artifacts.module = model_from_spec(artifacts.spec, weights_path=artifacts.checkpoint)
    return artifacts.module


# --- threads and devices ---------------------------------------------------------------------


def pin_threads(threads: int) -> dict[str, Any]:
    """Set every runtime's CPU thread count to ``threads``; returns what each now reports."""
    from ..preprocess import set_native_threads

    pinned: dict[str, Any] = {"requested": threads, "onnxruntime_intra_op": threads}
    set_native_threads(threads)
    pinned["native_preprocessing"] = threads
    try:
        import cv2

        cv2.setNumThreads(threads)
        pinned["opencv"] = cv2.getNumThreads()
    except ImportError:
        pinned["opencv"] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        pinned["torch"] = torch.get_num_threads()
    return pinned


def _torch_cuda() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_available())
    except Exception:
        return False


def _ort_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _wanted(name: str, settings: BenchSettings, reference: str) -> bool:
    if name == reference or not settings.backends:
        return True
    return any(name.startswith(prefix) for prefix in settings.backends)


def build_plans(
    artifacts: ModelArtifacts, settings: BenchSettings
) -> tuple[Plan, list[Plan], list[str]]:
    """(the reference plan, every plan including it, notes on what is absent and why)."""
    from .runners import BackendRunner, OnnxRuntimeRunner, TorchModuleRunner

    notes: list[str] = []
    spec = artifacts.spec
    module = _torch_module(artifacts)
    cuda = _torch_cuda() if module is not None else False
    ort = _ort_providers() if artifacts.onnx is not None else []
    devices = {"auto": ("cpu", "cuda"), "cpu": ("cpu",), "cuda": ("cuda",)}[settings.device]
    plans: list[Plan] = []
    add = plans.append
    if module is not None:
        add(
            Plan(
                BackendResult("torch-fp32-cpu", "torch", "cpu", "fp32", REFERENCE),
                lambda: TorchModuleRunner(module, spec, "cpu", "fp32", name="torch-fp32-cpu"),
            )
        )
        if "cuda" in devices and cuda:
            import torch

            variants = [("fp32", False), ("fp16", False)]
            if torch.cuda.is_bf16_supported():
                variants.append(("bf16", False))
            variants.append(("fp32", True))
            for precision, compiled in variants:
                name = f"torch-{'compile-' if compiled else ''}{precision}-cuda"
                add(
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
    if artifacts.onnx is not None:
        if not ort:
            notes.append(
                "onnxruntime is not installed: no ONNX Runtime rows "
                "(pip install 'saliq[cpu]', or onnxruntime-gpu)"
            )
        for name, (provider, device, precision) in ORT_PROVIDERS.items():
            # Without torch, ONNX Runtime on the CPU is the reference: it runs whatever
            # --device says (and is timed only when the CPU is wanted).
            status = REFERENCE if module is None and name == "onnxruntime-cpu" else PASSED
            if provider not in ort or (device not in devices and status != REFERENCE):
                continue
            chain = (
                [provider]
                if provider == "CPUExecutionProvider"
                else [provider, "CPUExecutionProvider"]
            )
            add(
                Plan(
                    BackendResult(name, "onnxruntime", device, precision, status),
                    lambda path=artifacts.onnx, chain=chain, n=name: OnnxRuntimeRunner(
                        path, providers=chain, threads=settings.threads, name=n
                    ),
                    expect_provider=provider,
                )
            )
    if artifacts.engines and "cuda" not in devices:
        notes.append(f"--device {settings.device}: the TensorRT engines were not run")
    for index, engine in enumerate(artifacts.engines if "cuda" in devices else []):
        from ..engine_sidecar import read_sidecar

        try:
            sidecar = read_sidecar(engine)
        except SaliqError as exc:
            notes.append(f"engine {engine} not run: {exc}")
            continue
        # TensorRT lets "fp32" engines use TF32 unless the builder's TF32 flag is cleared.
        precision = "tf32" if sidecar.precision == "fp32" else sidecar.precision
        name = f"tensorrt-{sidecar.precision}" + (f"-{index}" if len(artifacts.engines) > 1 else "")

        def open_engine(path: Path = engine) -> Any:
            from ..backends.tensorrt import TensorRTBackend

            return TensorRTBackend(path, allow_engine_host_code=settings.allow_engine_host_code)

        add(
            Plan(
                BackendResult(name, "tensorrt", "cuda", precision, notes=str(engine)),
                lambda f=open_engine, n=name: BackendRunner(f, name=n),
                max_batch=max(p.max_batch for p in sidecar.profiles),
            )
        )
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


# --- parity ----------------------------------------------------------------------------------


def parity_frames(
    spec: ModelSpec, count: int, images: str | None = None
) -> tuple[list[tuple[np.ndarray, str]], str]:
    """``count`` real photos as (pixels, format) and where they came from: the user's folder,
    else scikit-image's sample photos at distortion levels 0-5 (:func:`saliq.frames.distort`),
    else saliq's procedural parity scenes."""
    if images:
        from ..imageio import expand_paths, read_image

        paths = expand_paths(images)[:count]
        if not paths:
            raise ConfigError(f"--images {images}: no images there")
        return [read_image(p) for p in paths], f"{len(paths)} photos from {images}"
    from ..frames import DISTORTIONS, LEVELS, distort

    try:
        import skimage.data as sample
    except ImportError:
        sample = None
    if sample is not None:
        photos = []
        for name in SKIMAGE_PHOTOS:
            pixels = getattr(sample, name)()
            photos.append(np.ascontiguousarray(pixels[0] if isinstance(pixels, tuple) else pixels))
        rng = np.random.default_rng(0)
        frames = []
        for i in range(count):
            level = i % LEVELS
            kind = DISTORTIONS[(i // LEVELS) % len(DISTORTIONS)]
            frames.append(
                (np.ascontiguousarray(distort(photos[i % len(photos)], kind, level, rng)), "RGB")
            )
        return frames, (
            f"scikit-image sample photos ({', '.join(SKIMAGE_PHOTOS)}) at distortion levels 0-5"
        )
    from ..frames import parity_frames as procedural

    size = (max(2 * spec.input_height, 480), max(2 * spec.input_width, 640))
    frames = [(f, "RGB") for f in procedural(count, size)]
    return frames, f"saliq.frames procedural scenes {size[0]}x{size[1]} (no scikit-image)"


def preprocess_frames(
    spec: ModelSpec, frames: Sequence[tuple[np.ndarray, str]], implementation: str = "auto"
) -> dict[str, np.ndarray]:
    """The model's float32 inputs for decoded frames (one call per pixel format, as
    ``Assessor.preprocess`` does)."""
    from ..preprocess import Preprocessor

    pre = Preprocessor.from_spec(spec, implementation=implementation)
    by_format: dict[str, list[int]] = {}
    for index, (_, fmt) in enumerate(frames):
        by_format.setdefault(fmt, []).append(index)
    inputs: dict[str, np.ndarray] = {}
    for fmt, indices in by_format.items():
        out = pre([frames[i][0] for i in indices], fmt=fmt)
        for name in spec.inputs:
            if name not in inputs:
                inputs[name] = np.empty((len(frames), *out[name].shape[1:]), np.float32)
            inputs[name][indices] = out[name]
    return inputs


def _activate(plan: Plan) -> None:
    """Open the plan's runner; a missing runtime is skipped, a failure is an error."""
    try:
        plan.runner = plan.make().activate()
    except (ImportError, BackendUnavailableError) as exc:
        plan.result.status, plan.result.reason = SKIPPED, _one_line(exc)
        return
    except Exception as exc:  # a runtime that fails to open is a row, not a crash
        plan.result.status, plan.result.reason = ERROR, _one_line(exc)
        return
    active = getattr(getattr(plan.runner, "backend", None), "provider", None)
    if plan.expect_provider and active and active != plan.expect_provider:
        plan.result.status = SKIPPED
        plan.result.reason = (
            f"ONNX Runtime fell back to {active} ({plan.expect_provider} "
            "could not start: its CUDA/TensorRT libraries are missing?)"
        )
        _close(plan)


def _close(plan: Plan) -> None:
    if plan.runner is not None:
        with contextlib.suppress(Exception):
            plan.runner.deactivate()
        plan.runner = None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def run_parity(
    plans: list[Plan],
    reference: Plan,
    feeds: dict[str, np.ndarray],
    trained: bool,
    spec: ModelSpec,
) -> None:
    """Gate every plan against the reference's outputs on ``feeds`` (statuses set in place)."""
    _activate(reference)
    if reference.runner is None:
        raise BackendUnavailableError(
            f"the reference {reference.result.name} could not run: {reference.result.reason}"
        )
    expected = run_batched(reference.runner, feeds, PARITY_BATCH)
    reference.result.parity = evaluate_parity(
        expected, expected, tolerance_for(reference.result.precision), trained, spec
    )
    for plan in plans:
        if plan is reference:
            continue
        _activate(plan)
        if plan.runner is None:
            continue
        try:
            got = run_batched(plan.runner, feeds, min(PARITY_BATCH, plan.max_batch))
            tolerance = tolerance_for(plan.result.precision)
            plan.result.parity = evaluate_parity(expected, got, tolerance, trained, spec)
        except Exception as exc:
            plan.result.status, plan.result.reason = ERROR, _one_line(exc)
            _close(plan)
            continue
        if plan.result.parity["passed"]:
            plan.result.status = PASSED
        else:
            plan.result.status = FAILED
            plan.result.reason = "; ".join(plan.result.parity["reasons"])


# --- timing ----------------------------------------------------------------------------------


def _timer(plan: Plan) -> IntervalTimer:
    runner = plan.runner
    assert runner is not None
    if plan.clock == "cuda_events":
        return CudaEventTimer()
    return WallTimer(synchronize=runner.synchronize if plan.result.device == "cuda" else None)


def measure_peak_memory(plan: Plan, fn: Callable[[], object], calls: int = 2) -> dict[str, Any]:
    """Peak memory of ``calls`` calls, measured apart from the timed runs (tracemalloc slows
    Python allocations down). CPU: the process's resident-set high-water mark during the
    calls (Linux resets it through /proc/self/clear_refs; elsewhere it is the process's
    lifetime peak) and the peak of Python-tracked allocations (NumPy arrays). PyTorch on CUDA:
    ``torch.cuda.max_memory_allocated``. Other GPU runtimes allocate outside torch: None."""
    if plan.result.device == "cuda":
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


def _budget_runs(settings: BenchSettings, round_ms: float, calls: int) -> int:
    """Timed runs for one interleaved set: ``settings.runs``, fewer when a round is so slow
    that they would exceed ``row_seconds`` per call, never fewer than MIN_RUNS."""
    if round_ms <= 0:
        return settings.runs
    affordable = int(settings.row_seconds * 1000.0 * calls / round_ms)
    return max(min(settings.runs, MIN_RUNS), min(settings.runs, affordable))


def _timed(timer: IntervalTimer, fn: Callable[[], object]) -> float:
    return timer.measure(fn) / 1e6


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
                first[name] = _timed(WallTimer(runner.synchronize), fn)
                for _ in range(max(0, settings.warmup - 1)):
                    steady[name] = _timed(timer, fn)
                steady.setdefault(name, first[name])
            except Exception as exc:
                log(f"  {name} at batch {batch}: {_one_line(exc)}")
                plan.result.notes = (
                    plan.result.notes + f"; batch {batch}: {_one_line(exc)}"
                ).lstrip("; ")
                continue
            fns[name], timers[name] = fn, timer
        if not fns:
            continue
        runs = _budget_runs(settings, sum(steady[n] for n in fns), len(fns))
        log(f"  batch {batch}: {', '.join(fns)} x {runs} interleaved runs")
        by_name = {p.result.name: p for p in active}
        try:
            timings = time_rounds(fns, timers, runs=runs, warmup=0)
        except Exception as exc:  # warmed up, then failed: a note, and the next batch size
            log(f"  batch {batch}: {_one_line(exc)}")
            for name in fns:
                by_name[name].result.notes += f" batch {batch} timing failed: {_one_line(exc)}"
            continue
        for name, timing in timings.items():
            plan = by_name[name]
            try:
                memory = measure_peak_memory(plan, fns[name])
            except Exception as exc:
                memory = {"kind": None, "bytes": None, "source": _one_line(exc)}
            timing = type(timing)(**{**timing.to_dict(), "warmup": settings.warmup})
            rows.append(
                LatencyRow.from_timing(
                    name, batch, timing, timers[name].clock_name, plan.io, first[name], memory
                )
            )
    return rows


def bench_frames() -> dict[str, np.ndarray]:
    """One 1080p and one 4K uint8 BGR frame (the 4K frame is the 1080p one upscaled:
    preprocessing cost does not depend on the content)."""
    import cv2

    from ..frames import pristine_frames

    frame = pristine_frames(1, FRAME_SIZES["1080p"], order="BGR")[0]
    height, width = FRAME_SIZES["4K"]
    return {
        "1080p": frame,
        "4K": cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR),
    }


def _cuda_preprocessing(spec: ModelSpec) -> Any:
    """The Preprocessor when its CUDA kernel can run here, else None."""
    from ..preprocess import Preprocessor, native_module

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
    from ..spec import PREPROCESSING_OUTPUTS

    shapes = {
        name: fn(spec) for name, fn in PREPROCESSING_OUTPUTS[spec.preprocessing_version].items()
    }
    if spec.preprocessing_version >= 2:
        from ..views import ViewConfig

        views = ViewConfig.from_dict(spec.view_config)
        if not views.detail_crops:
            for name in ("crops", "crop_gradient", "crop_boxes", "crop_weights"):
                shapes.pop(name, None)
        if not views.detail_crops or not views.grid_crops:
            shapes.pop("grid", None)
            shapes.pop("grid_boxes", None)
    return {
        name: torch.empty((batch, *shape), dtype=torch.float32, device="cuda")
        for name, shape in shapes.items()
    }


def time_stages(
    plans: list[Plan], spec: ModelSpec, settings: BenchSettings, workdir: Path, log: Callable
) -> tuple[list[StageRow], list[StageRow]]:
    """Preprocessing rows (one frame per call) and end-to-end rows (one frame to a score)."""
    import cv2

    from ..imageio import read_image
    from ..preprocess import Preprocessor

    frames = bench_frames()
    jpeg = workdir / "frame_1080p.jpg"
    cv2.imwrite(str(jpeg), frames["1080p"], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    native = Preprocessor.from_spec(spec)
    native_name = "native-cpu" if native.uses_native else "python (native not built)"
    reference = Preprocessor.from_spec(spec, implementation="python")
    gpu_pre = _cuda_preprocessing(spec)
    torch = sys.modules.get("torch") if _torch_cuda() else None

    pre_fns: dict[str, Callable[[], object]] = {}
    pre_timers: dict[str, IntervalTimer] = {}
    labels: dict[str, tuple[str, str, str]] = {}
    for size, frame in frames.items():
        for name, pre in ((native_name, native), ("opencv-reference", reference)):
            key = f"{name} @ {size}"
            pre_fns[key] = lambda p=pre, f=frame: p([f], fmt="BGR")
            pre_timers[key] = WallTimer()
            labels[key] = (name, size, "host in, host out")
        if gpu_pre is not None:
            key = f"cuda-kernel @ {size}"
            pre_fns[key] = lambda f=frame: gpu_pre.cuda([f], fmt="BGR")
            pre_timers[key] = WallTimer()
            labels[key] = ("cuda-kernel", size, "host in, host out (synchronised)")
            if torch is not None:
                buffers = _device_buffers(spec, torch)
                key = f"cuda-kernel-device @ {size}"
                pre_fns[key] = lambda f=frame, b=buffers: gpu_pre.cuda(
                    [f], fmt="BGR", stream=torch.cuda.current_stream(), out=b
                )
                pre_timers[key] = CudaEventTimer()
                labels[key] = ("cuda-kernel", size, "host frame in, device outputs")
    preprocessing = _time_stage_set(pre_fns, pre_timers, labels, settings, log, "preprocessing")

    e2e_fns: dict[str, Callable[[], object]] = {}
    e2e_timers: dict[str, IntervalTimer] = {}
    labels = {}
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
            key = f"{name} @ {size}"
            if device_path:

                def fn(f=frame, r=runner, b=buffers) -> float:
                    gpu_pre.cuda([f], fmt="BGR", stream=torch.cuda.current_stream(), out=b)
                    out = r.run_prepared({k: b[k] for k in spec.inputs})
                    return float(out["score"].float().cpu()[0])

                via = "uint8 frame, CUDA kernel preprocessing"
            else:

                def fn(f=frame, r=runner) -> float:
                    return float(r.infer(_inputs(native([f], fmt="BGR"), spec))["score"][0])

                via = f"uint8 frame, {native_name} preprocessing"
            e2e_fns[key], e2e_timers[key] = fn, WallTimer(sync)
            labels[key] = (name, f"uint8 {size}", via)
        key = f"{name} @ JPEG"

        def from_jpeg(r=runner) -> float:
            pixels, fmt = read_image(jpeg)
            return float(r.infer(_inputs(native([pixels], fmt=fmt), spec))["score"][0])

        e2e_fns[key], e2e_timers[key] = from_jpeg, WallTimer(sync)
        labels[key] = (name, "JPEG 1080p", f"decode (OpenCV) + {native_name} preprocessing")
    end_to_end = _time_stage_set(e2e_fns, e2e_timers, labels, settings, log, "end to end")
    return preprocessing, end_to_end


def _inputs(outputs: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    return {name: outputs[name] for name in spec.inputs}


def _time_stage_set(
    fns: dict[str, Callable[[], object]],
    timers: dict[str, IntervalTimer],
    labels: dict[str, tuple[str, str, str]],
    settings: BenchSettings,
    log: Callable,
    what: str,
) -> list[StageRow]:
    rows: list[StageRow] = []
    working: dict[str, Callable[[], object]] = {}
    round_ms = 0.0
    for key, fn in fns.items():
        name, size, via = labels[key]
        try:
            round_ms += _timed(WallTimer(), fn)  # first call: also the warm-up's start
            for _ in range(max(0, settings.warmup - 1)):
                fn()
        except Exception as exc:
            rows.append(
                StageRow(
                    name,
                    size,
                    via,
                    0,
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    timers[key].clock_name,
                    error=_one_line(exc),
                )
            )
            continue
        working[key] = fn
    if working:
        runs = _budget_runs(settings, round_ms, len(working))
        log(f"  {what}: {len(working)} calls x {runs} interleaved runs")
        timings = time_rounds(working, {k: timers[k] for k in working}, runs=runs, warmup=0)
        for key, timing in timings.items():
            name, size, via = labels[key]
            rows.append(StageRow.from_timing(name, size, via, timing, timers[key].clock_name))
    return rows


# --- the run ---------------------------------------------------------------------------------


def default_output_dir(slug: str) -> Path:
    return Path("benchmarks") / "results" / slug


def _file_stem(model: str) -> str:
    stem = Path(model).stem if _is_file_argument(model) else model
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "model"


def run_bench(settings: BenchSettings, log: Callable[[str], None] | None = None) -> BenchReport:
    """One benchmark (no files written: see :func:`cmd_bench`)."""
    log = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="saliq-bench-") as tmp:
        workdir = Path(tmp)
        return _run(settings, workdir, log)


def _run(settings: BenchSettings, workdir: Path, log: Callable[[str], None]) -> BenchReport:
    started = time.perf_counter()
    threads = settings.threads or machine_info.default_threads()
    settings.threads = threads
    load = machine_info.load_average()  # before this run adds its own
    cpus = machine_info.default_threads()
    artifacts = resolve_model(settings, workdir)
    spec = artifacts.spec
    log(f"model: {spec.name} ({artifacts.kind}: {artifacts.source})")
    reference, plans, notes = build_plans(artifacts, settings)
    pinned = pin_threads(threads)  # after torch was imported (if it was)
    trained = bool(artifacts.trained)

    frames, source = parity_frames(spec, settings.parity_images, settings.images)
    feeds = preprocess_frames(spec, frames)
    log(f"parity: {len(frames)} images ({source}) against {reference.result.name}")
    try:
        run_parity(plans, reference, feeds, trained, spec)
        for plan in plans:
            log(
                f"  {plan.result.name}: {plan.result.status}"
                + (f" ({plan.result.reason})" if plan.result.reason else "")
            )
            if plan.result.status == FAILED and not settings.time_failed:
                _close(plan)
        timed = [
            p
            for p in plans
            if p.runner is not None and p.timed and (p.result.timeable or settings.time_failed)
        ]
        log("latency:")
        latency = time_latency(timed, feeds, settings, log)
        preprocessing: list[StageRow] = []
        end_to_end: list[StageRow] = []
        if settings.stages:
            log("preprocessing and end to end:")
            preprocessing, end_to_end = time_stages(timed, spec, settings, workdir, log)
    finally:
        for plan in plans:
            _close(plan)

    if load is not None and load >= 0.5 * cpus:
        notes.append(
            f"load average {load:.1f} on {cpus} CPUs before this run: other work shares the "
            "machine, so absolute times are noisy (compare the ratios; PyTorch's threads "
            "stall whenever a core is taken: --threads 1 avoids that)"
        )
    if not trained:
        notes.append(
            "untrained model (random weights)"
            if artifacts.trained is False
            else "training status unknown (no checkpoint)"
        )
        notes[-1] += ": only absolute differences are gated; SRCC and saliency CC are not shown"
    if artifacts.kind == "architecture":
        notes.append("timings of random weights equal a trained model's of the same config")
    report = BenchReport(
        model={
            "name": spec.name,
            "kind": artifacts.kind,
            "source": artifacts.source,
            "architecture": spec.architecture,
            "backbone": spec.backbone,
            "input": f"{spec.input_height}x{spec.input_width}",
            "preprocessing_version": spec.preprocessing_version,
            "inputs": list(spec.inputs),
            "outputs": list(spec.outputs),
            "trained": artifacts.trained,
            "checkpoint": _shown(artifacts.checkpoint, artifacts, workdir),
            "onnx": _shown(artifacts.onnx, artifacts, workdir),
            "engines": [str(e) for e in artifacts.engines],
        },
        machine=machine_info.describe(pinned),
        settings={
            "batches": list(settings.batches),
            "runs": settings.runs,
            "min_runs": MIN_RUNS,
            "warmup": settings.warmup,
            "row_seconds": settings.row_seconds,
            "threads": threads,
            "device": settings.device,
            "quick": settings.quick,
            "parity_images": len(frames),
            "parity_source": source,
            "tolerances": {p.result.precision: tolerance_for(p.result.precision) for p in plans},
            "frames": "saliq.frames.pristine_frames 1080p scene; 4K = it upscaled 2x (bilinear); "
            f"JPEG = it at quality {JPEG_QUALITY}",
            "seconds": round(time.perf_counter() - started, 1),
        },
        reference=reference.result.name,
        backends=[p.result for p in plans],
        latency=latency,
        preprocessing=preprocessing,
        end_to_end=end_to_end,
        notes=[*artifacts.notes, *notes],
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=settings.command,
    )
    return report


def _shown(path: Path | None, artifacts: ModelArtifacts, workdir: Path) -> str | None:
    """A file as the JSON names it: None for files made for this run (they are gone after
    it), the bare name for the shipped model's (no machine's install path in results)."""
    if path is None or path.is_relative_to(workdir):
        return None
    return path.name if artifacts.kind == "default" else str(path)


# --- the command -----------------------------------------------------------------------------


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--batch wants a comma list such as 1,4,16, got {text!r}"
        ) from None
    if not values or any(not 1 <= v <= 256 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be in 1..256, got {text!r}")
    return tuple(sorted(set(values)))


def _input_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"--input-size wants HxW (e.g. 64x64), got {text!r}")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height % 32 or width % 32 or not height or not width:
        raise argparse.ArgumentTypeError(
            f"--input-size sides must be multiples of 32, got {text!r}"
        )
    return height, width


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a value > 0, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="default | an architecture name (random weights) | .safetensors | .onnx | .engine",
    )
    parser.add_argument(
        "--batch",
        type=_batches,
        default=None,
        help="comma list of batch sizes (default 1,4,16,64; --quick: 1,16)",
    )
    parser.add_argument(
        "--runs",
        type=_positive(int),
        default=None,
        help=f"timed runs per row (default {DEFAULT_RUNS}; --quick "
        f"{QUICK_RUNS}; fewer when a row would exceed --row-seconds, never "
        f"fewer than {MIN_RUNS})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"untimed calls first (default {DEFAULT_WARMUP}; --quick {QUICK_WARMUP})",
    )
    parser.add_argument(
        "--row-seconds",
        type=_positive(float),
        default=None,
        help=f"time budget per row (default {DEFAULT_ROW_SECONDS:g} s; --quick "
        f"{QUICK_ROW_SECONDS:g} s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for every runtime (default: all CPUs this process "
        "may use); pinned and reported",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="batch 1 and 16, few runs, fewer parity images (CI, small CPUs)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="which backends to run (auto: CPU and, when present, CUDA); the "
        "reference always runs on the CPU",
    )
    parser.add_argument(
        "--backends",
        default=None,
        help="comma list of backend names or prefixes to keep, e.g. "
        "torch-fp16,onnxruntime (the reference always runs)",
    )
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="ENGINE",
        help="also run this TensorRT engine of the same model (repeatable)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="the checkpoint or ONNX to compare against (default: beside MODEL with the same name)",
    )
    parser.add_argument(
        "--allow-engine-host-code",
        action="store_true",
        help="load version-compatible engines (only engines you built/trust)",
    )
    parser.add_argument(
        "--parity-images",
        type=_positive(int),
        default=None,
        help=f"photos compared (default {DEFAULT_PARITY_IMAGES}; --quick {QUICK_PARITY_IMAGES})",
    )
    parser.add_argument(
        "--images",
        default=None,
        help="a folder of your photos for parity (default: scikit-image's "
        "sample photos, else saliq's procedural scenes)",
    )
    parser.add_argument(
        "--model-config",
        default=None,
        metavar="JSON",
        help="architecture names: constructor arguments over the default "
        "config, e.g. '{\"feature_dim\": 32}'",
    )
    parser.add_argument(
        "--input-size",
        type=_input_size,
        default=None,
        metavar="HxW",
        help="architecture names: the input size (multiples of 32)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="architecture names: the training config to build from (default: "
        "configs/<architecture>/default.yaml when present)",
    )
    parser.add_argument("--configs-dir", default="configs", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-stages", action="store_true", help="skip the preprocessing and end-to-end rows"
    )
    parser.add_argument(
        "--time-failed",
        action="store_true",
        help="time backends that failed parity too (still FAILED: no speed-up)",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="where bench_<model>.json and .png go (default benchmarks/results/<device>/)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the table")


def settings_from_args(
    args: argparse.Namespace, argv: Sequence[str] | None = None
) -> BenchSettings:
    """The settings of parsed ``saliq bench`` arguments (``--quick`` fills unset values)."""
    model_config: dict = {}
    if args.model_config:
        try:
            model_config = json.loads(args.model_config)
        except ValueError as exc:
            raise ConfigError(
                f"--model-config is not JSON ({exc}); e.g. '{{\"feature_dim\": 32}}'"
            ) from None
        if not isinstance(model_config, dict):
            raise ConfigError("--model-config must be a JSON object of constructor arguments")
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: all CPUs), got {args.threads}")
    if args.warmup is not None and args.warmup < 1:
        raise ConfigError(
            f"--warmup must be >= 1 (the first call is never timed), got {args.warmup}"
        )
    quick = bool(args.quick)
    return BenchSettings(
        model=args.model,
        batches=args.batch or (QUICK_BATCHES if quick else DEFAULT_BATCHES),
        runs=args.runs or (QUICK_RUNS if quick else DEFAULT_RUNS),
        warmup=args.warmup or (QUICK_WARMUP if quick else DEFAULT_WARMUP),
        threads=args.threads,
        parity_images=args.parity_images
        or (QUICK_PARITY_IMAGES if quick else DEFAULT_PARITY_IMAGES),
        images=args.images,
        device=args.device,
        backends=tuple(b.strip() for b in (args.backends or "").split(",") if b.strip()),
        engines=tuple(args.engine),
        reference=args.reference,
        output_dir=args.output_dir,
        plots=not args.no_plots,
        stages=not args.no_stages,
        time_failed=args.time_failed,
        row_seconds=args.row_seconds or (QUICK_ROW_SECONDS if quick else DEFAULT_ROW_SECONDS),
        model_config=model_config,
        input_size=args.input_size,
        config=args.config,
        configs_dir=args.configs_dir,
        allow_engine_host_code=args.allow_engine_host_code,
        quick=quick,
        command="saliq bench " + shlex.join(list(argv)) if argv is not None else "saliq bench",
    )


def _stderr_log(message: str) -> None:
    """Progress lines go to stderr: stdout carries the table (or the JSON) alone."""
    print(message, file=sys.stderr, flush=True)


def write_outputs(report: BenchReport, settings: BenchSettings) -> tuple[Path, Path | None, str]:
    """(JSON path, PNG path or None, a note when the PNG was not drawn)."""
    out_dir = (
        Path(settings.output_dir)
        if settings.output_dir
        else default_output_dir(str(report.machine.get("slug") or "cpu"))
    )
    stem = f"bench_{_file_stem(settings.model)}"
    json_path = report.write_json(out_dir / f"{stem}.json")
    if not settings.plots:
        return json_path, None, ""
    from .plots import plot_report

    try:
        return json_path, plot_report(report, out_dir / f"{stem}.png"), ""
    except BackendUnavailableError as exc:
        return json_path, None, str(exc)


def cmd_bench(args: argparse.Namespace) -> int:
    argv = sys.argv[sys.argv.index("bench") + 1 :] if "bench" in sys.argv else [args.model]
    settings = settings_from_args(args, argv)
    report = run_bench(settings, None if args.json else _stderr_log)
    json_path, png_path, plot_note = write_outputs(report, settings)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report.format_table())
        print(f"\nwrote {json_path}" + (f" and {png_path}" if png_path else ""))
        if plot_note:
            print(f"no PNG: {plot_note}")
    bad = [b.name for b in report.backends if b.status in (FAILED, ERROR)]
    return 1 if bad else 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``saliq bench`` to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "bench",
        help=HELP,
        description=__doc__.split("\n\n")[0] if __doc__ else HELP,
    )
    add_arguments(parser)
    parser.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m saliq.bench.cli MODEL ...``: the same as ``saliq bench MODEL ...``."""
    parser = argparse.ArgumentParser(prog="saliq")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except SaliqError as exc:
        print(f"saliq: error: {exc}", file=sys.stderr)
        return 2


__all__ = [
    "DEFAULT_BATCHES",
    "QUICK_BATCHES",
    "BenchSettings",
    "ModelArtifacts",
    "Plan",
    "add_arguments",
    "build_plans",
    "cmd_bench",
    "measure_peak_memory",
    "parity_frames",
    "pin_threads",
    "preprocess_frames",
    "register",
    "resolve_model",
    "run_bench",
    "run_parity",
    "settings_from_args",
    "time_latency",
    "time_stages",
    "write_outputs",
]


if __name__ == "__main__":
    sys.exit(main())
