"""One ``saliq bench`` run, start to finish: parity first, then timing, then the report.

1. resolves the model's artifacts (:mod:`saliq.train.bench.models`): a checkpoint (PyTorch), an
   ONNX file (beside it, else exported for this run) and any engines; the reference is
   PyTorch fp32 on the CPU (ONNX Runtime on the CPU where no checkpoint or no torch is at
   hand: the table says so);
2. lists the backends present here (:mod:`saliq.train.bench.plans`) and pins the CPU threads
   (``--threads``: torch, ONNX Runtime, OpenCV, native preprocessing);
3. runs every backend on the same real photos and gates it against the reference
   (:mod:`saliq.train.bench.parity`): one that fails is FAILED and not timed;
4. times each passing backend at each batch size, interleaved (:mod:`saliq.train.bench.latency`);
5. times preprocessing of one 1080p and one 4K frame, and end to end from a uint8 frame and
   from a JPEG file to a score (:mod:`saliq.train.bench.stages`);
6. returns the :class:`~saliq.bench.report.BenchReport`; :func:`write_outputs` writes the
   JSON (atomically) and a PNG when matplotlib is present.
"""

from __future__ import annotations

import datetime
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from saliq.bench import machine as machine_info
from saliq.bench.report import FAILED, BenchReport, StageRow, tolerance_for
from saliq.errors import BackendUnavailableError
from saliq.spec import ModelSpec

from .latency import time_latency
from .models import ModelArtifacts, is_file_argument, resolve_model
from .parity import parity_frames, preprocess_frames, run_parity
from .plans import Plan, build_plans, close
from .settings import MIN_RUNS, BenchSettings
from .stages import JPEG_QUALITY, time_stages


def run_bench(settings: BenchSettings, log: Callable[[str], None] | None = None) -> BenchReport:
    """One benchmark (no files written: see :func:`write_outputs`)."""
    log = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="saliq-bench-") as tmp:
        workdir = Path(tmp)
        return _run(settings, workdir, log)


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
    from saliq.bench.plots import plot_report

    try:
        return json_path, plot_report(report, out_dir / f"{stem}.png"), ""
    except BackendUnavailableError as exc:
        return json_path, None, str(exc)


def default_output_dir(slug: str) -> Path:
    return Path("benchmarks") / "results" / slug


def _file_stem(model: str) -> str:
    stem = Path(model).stem if is_file_argument(model) else model
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "model"


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
    pinned = machine_info.pin_threads(threads)  # after torch was imported (if it was)
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
                close(plan)
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
            close(plan)

    notes += _run_notes(artifacts, trained, load, cpus)
    return BenchReport(
        model=_model_entry(artifacts, spec, workdir),
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
            "tolerances": _tolerances(plans),
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


def _run_notes(
    artifacts: ModelArtifacts, trained: bool, load: float | None, cpus: int
) -> list[str]:
    """What a reader of the numbers must know about this run (machine load, the gate)."""
    notes = []
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
    return notes


def _model_entry(artifacts: ModelArtifacts, spec: ModelSpec, workdir: Path) -> dict[str, Any]:
    return {
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
    }


def _tolerances(plans: list[Plan]) -> dict[str, float]:
    return {p.result.precision: tolerance_for(p.result.precision) for p in plans}


def _shown(path: Path | None, artifacts: ModelArtifacts, workdir: Path) -> str | None:
    """A file as the JSON names it: None for files made for this run (they are gone after
    it), the bare name for the shipped model's (no machine's install path in results)."""
    if path is None or path.is_relative_to(workdir):
        return None
    return path.name if artifacts.kind == "default" else str(path)


__all__ = ["default_output_dir", "run_bench", "write_outputs"]
