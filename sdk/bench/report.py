"""The result of one ``saliq bench`` run: rows, the parity gate, the table, the JSON file.

Pure Python + NumPy (no runtime is imported), so every rule below is tested on any machine:

* each backend is compared with the reference (PyTorch fp32) on the same photos before it
  is timed; the tolerance depends on its precision (:data:`TOLERANCES`);
* trained models are gated by :func:`saliq.bench.compare.compare_outputs` (scores, ranks,
  saliency-map correlation) and reported with the SRCC of the scores; an untrained
  (random-weight) model's scores crowd together and its maps have no structure, so only
  absolute differences are gated and reported (:func:`saliq.bench.compare.absolute_parity`);
* a backend that fails parity is FAILED: it gets no speed-up, is never the fastest, and the
  table prints FAILED where its latency would be (``saliq bench`` does not even time it
  unless asked to);
* latency rows give p50/p90/p99 over the timed runs, throughput (batch / p50) and peak
  memory; speed-ups are p50 ratios against PyTorch fp32 on the same device, measured in the
  same interleaved rounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from ..spec import SALIENCY, SCORE, ModelSpec
from .compare import (
    DEFAULT_MIN_MAP_CC,
    absolute_parity,
    compare_outputs,
    spearman,
)
from .timer import Timing

SCHEMA = "saliq.bench"
SCHEMA_VERSION = 1
REFERENCE, PASSED, FAILED, SKIPPED, ERROR = "reference", "passed", "FAILED", "skipped", "error"
STATUSES = (REFERENCE, PASSED, FAILED, SKIPPED, ERROR)
TIMEABLE = (REFERENCE, PASSED)  # statuses whose latencies are reported and compared
# Score tolerance per precision (scores live in [0, 1]). fp32: the parity bar for
# ONNX Runtime against PyTorch. tf32 (TensorRT's default for "fp32" engines, cuDNN's for
# convolutions): 10-bit mantissa. fp16 (11-bit mantissa): the `saliq export trt` gate.
# bf16 (8-bit): twice that, still well under the 0.18 label step of one distortion level.
TOLERANCES = {"fp32": 1e-4, "tf32": 1e-3, "fp16": 1e-2, "bf16": 2e-2, "int8": 5e-2}
BASELINE_RUNTIME, BASELINE_PRECISION = "torch", "fp32"  # speed-ups are against this
TOP_KEYS = {
    "schema": str,
    "schema_version": int,
    "created": str,
    "command": str,
    "model": dict,
    "machine": dict,
    "settings": dict,
    "reference": str,
    "backends": list,
    "latency": list,
    "preprocessing": list,
    "end_to_end": list,
    "fastest": dict,
    "notes": list,
}
BACKEND_KEYS = {
    "name": str,
    "runtime": str,
    "device": str,
    "precision": str,
    "status": str,
    "reason": str,
}
LATENCY_KEYS = {
    "backend": str,
    "batch": int,
    "runs": int,
    "warmup": int,
    "p50_ms": float,
    "p90_ms": float,
    "p99_ms": float,
    "mean_ms": float,
    "min_ms": float,
    "max_ms": float,
    "throughput_ips": float,
    "clock": str,
    "io": str,
}
STAGE_KEYS = {"name": str, "input": str, "via": str, "runs": int, "p50_ms": float, "clock": str}
MODEL_KEYS = {"name": str, "kind": str, "source": str, "architecture": str, "input": str}


def tolerance_for(precision: str, overrides: Mapping[str, float] | None = None) -> float:
    """The score tolerance of a precision (``overrides`` first), e.g. 1e-4 for fp32."""
    table = {**TOLERANCES, **(overrides or {})}
    if precision not in table:
        raise ValueError(f"no tolerance for precision {precision!r}; known: {sorted(table)}")
    return float(table[precision])


def evaluate_parity(
    reference: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    tolerance: float,
    trained: bool,
    spec: ModelSpec | None = None,
) -> dict[str, Any]:
    """The parity entry of one backend: the gate's verdict and the differences.

    ``trained``: the full gate (score tolerance, rank order, map correlation >= 0.99) and
    the SRCC of the scores; otherwise the absolute gate, and SRCC/CC are None (not
    meaningful on random weights).
    """
    if trained:
        report = compare_outputs(reference, test, tolerance, DEFAULT_MIN_MAP_CC, spec=spec)
        srcc: float | None = spearman(reference[SCORE], test[SCORE])
        cc = report.maps.get(SALIENCY)
        cc_min = cc["min_cc"] if cc else None
        cc_median = cc["median_cc"] if cc else None
    else:
        report = absolute_parity(reference, test, tolerance)
        srcc = cc_min = cc_median = None
    return {
        "gate": report.gate,
        "passed": report.passed,
        "images": report.images,
        "tolerance": report.tolerance,
        "max_score_diff": report.max_score_diff,
        "mean_score_diff": report.mean_score_diff,
        "max_saliency_diff": report.max_abs_diff.get(SALIENCY),
        "mean_saliency_diff": report.mean_abs_diff.get(SALIENCY),
        "srcc": srcc,
        "saliency_cc_min": cc_min,
        "saliency_cc_median": cc_median,
        "misranked_pairs": report.misranked_pairs if trained else None,
        "compared_pairs": report.compared_pairs if trained else None,
        "max_abs_diff": dict(report.max_abs_diff),
        "mean_abs_diff": dict(report.mean_abs_diff),
        "reasons": list(report.reasons),
    }


@dataclass
class BackendResult:
    """One way of running the model, and what the parity gate said about it."""

    name: str  # e.g. "onnxruntime-cpu", "torch-fp16-cuda", "tensorrt-fp16"
    runtime: str  # torch | onnxruntime | tensorrt | ...
    device: str  # cpu | cuda
    precision: str  # fp32 | tf32 | fp16 | bf16 | int8
    status: str = PASSED
    reason: str = ""  # why FAILED / skipped / error
    parity: dict[str, Any] | None = None  # evaluate_parity's entry (None: reference/skipped)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def timeable(self) -> bool:
        return self.status in TIMEABLE


def one_line_error(exc: BaseException) -> str:
    """The reason a row records for an exception: its type and first line, at most 300
    characters (tables and JSON stay readable whatever a runtime raised)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class LatencyRow:
    """Network latency of one backend at one batch size (prepared inputs, see runners)."""

    backend: str
    batch: int
    runs: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float  # images per second at the p50 latency
    clock: str  # "wall" | "cuda_events"
    io: str  # "host" (copies in the timed call) | "device" (inputs already on the device)
    first_call_ms: float | None = None  # warm-up's first call: compile, autotune, allocation
    peak_memory: dict[str, Any] | None = None

    @classmethod
    def from_timing(
        cls,
        backend: str,
        batch: int,
        timing: Timing,
        clock: str,
        io: str,
        first_call_ms: float | None = None,
        peak_memory: dict[str, Any] | None = None,
    ) -> LatencyRow:
        return cls(
            backend=backend,
            batch=int(batch),
            runs=timing.runs,
            warmup=timing.warmup,
            p50_ms=timing.median_ms,
            p90_ms=timing.p90_ms,
            p99_ms=timing.p99_ms,
            mean_ms=timing.mean_ms,
            min_ms=timing.min_ms,
            max_ms=timing.max_ms,
            throughput_ips=batch * 1000.0 / timing.median_ms if timing.median_ms > 0 else 0.0,
            clock=clock,
            io=io,
            first_call_ms=first_call_ms,
            peak_memory=peak_memory,
        )


@dataclass
class StageRow:
    """Preprocessing (name = implementation) or end to end (name = backend), one frame."""

    name: str
    input: str  # "1080p", "4K", "JPEG 1080p"
    via: str  # preprocessing: its implementation; end to end: decode + preprocessing used
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    clock: str
    error: str | None = None

    @classmethod
    def from_timing(cls, name: str, input: str, via: str, timing: Timing, clock: str):
        return cls(
            name, input, via, timing.runs, timing.median_ms, timing.p90_ms, timing.p99_ms, clock
        )


@dataclass
class BenchReport:
    model: dict[str, Any]
    machine: dict[str, Any]
    settings: dict[str, Any]
    reference: str  # the backend every other is compared with
    backends: list[BackendResult] = field(default_factory=list)
    latency: list[LatencyRow] = field(default_factory=list)
    preprocessing: list[StageRow] = field(default_factory=list)
    end_to_end: list[StageRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created: str = ""
    command: str = ""

    # --- derived -----------------------------------------------------------------------

    def backend(self, name: str) -> BackendResult | None:
        return next((b for b in self.backends if b.name == name), None)

    def _timeable(self, name: str) -> bool:
        backend = self.backend(name)
        return backend is not None and backend.timeable

    def baseline_name(self, device: str) -> str | None:
        """The backend speed-ups on ``device`` are measured against (PyTorch fp32 there)."""
        for b in self.backends:
            if (
                b.runtime == BASELINE_RUNTIME
                and b.precision == BASELINE_PRECISION
                and b.device == device
                and "compile" not in b.name
                and b.timeable
            ):
                return b.name
        return None

    def speedup(self, row: LatencyRow) -> float | None:
        """p50 of PyTorch fp32 on the row's device at the row's batch / the row's p50; None
        for a backend that did not pass parity (it is never reported as faster)."""
        backend = self.backend(row.backend)
        if backend is None or not backend.timeable:
            return None
        base_name = self.baseline_name(backend.device)
        base = next(
            (r for r in self.latency if r.backend == base_name and r.batch == row.batch), None
        )
        if base is None or row.p50_ms <= 0:
            return None
        return base.p50_ms / row.p50_ms

    def fastest(self) -> dict[int, str]:
        """batch -> the backend with the lowest p50 among those that passed parity."""
        best: dict[int, LatencyRow] = {}
        for row in self.latency:
            if not self._timeable(row.backend):
                continue
            if row.batch not in best or row.p50_ms < best[row.batch].p50_ms:
                best[row.batch] = row
        return {batch: row.backend for batch, row in sorted(best.items())}

    # --- JSON ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        latency = []
        for row in self.latency:
            entry = asdict(row)
            entry["status"] = getattr(self.backend(row.backend), "status", ERROR)
            entry["speedup_vs_torch_fp32"] = self.speedup(row)
            latency.append(entry)
        return clean_json(
            {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "created": self.created,
                "command": self.command,
                "model": self.model,
                "machine": self.machine,
                "settings": self.settings,
                "reference": self.reference,
                "backends": [asdict(b) for b in self.backends],
                "latency": latency,
                "preprocessing": [asdict(r) for r in self.preprocessing],
                "end_to_end": [asdict(r) for r in self.end_to_end],
                "fastest": {str(batch): name for batch, name in self.fastest().items()},
                "notes": list(self.notes),
            }
        )

    def write_json(self, path: str | Path) -> Path:
        """Write the report atomically (a crash never leaves half a file); returns the path."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        write_text_atomic(path, text)
        return Path(path)

    # --- the table -------------------------------------------------------------------------

    def format_table(self) -> str:
        return format_table(self)


def clean_json(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), NumPy scalars -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def validate_report(data: Mapping[str, Any]) -> list[str]:
    """Problems with a bench JSON document (empty when it follows the schema): required keys
    and their types, known statuses, and the gate's rule that a backend which did not pass
    parity has no speed-up and is never the fastest."""
    problems: list[str] = []

    def check(entry: Any, keys: Mapping[str, type], where: str) -> None:
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: not an object")
            return
        for key, kind in keys.items():
            if key not in entry:
                problems.append(f"{where}: missing {key!r}")
            elif kind is float:
                if entry[key] is not None and not isinstance(entry[key], (int, float)):
                    problems.append(f"{where}.{key}: not a number")
            elif not isinstance(entry[key], kind) or isinstance(entry[key], bool) is not (
                kind is bool
            ):
                problems.append(f"{where}.{key}: not {kind.__name__}")

    check(data, TOP_KEYS, "report")
    if problems:
        return problems
    if data["schema"] != SCHEMA:
        problems.append(f"schema is {data['schema']!r}, not {SCHEMA!r}")
    check(data["model"], MODEL_KEYS, "model")
    from .machine import MACHINE_KEYS

    for key in MACHINE_KEYS:
        if key not in data["machine"]:
            problems.append(f"machine: missing {key!r}")
    statuses = {}
    for i, backend in enumerate(data["backends"]):
        check(backend, BACKEND_KEYS, f"backends[{i}]")
        if isinstance(backend, Mapping):
            statuses[backend.get("name")] = backend.get("status")
            if backend.get("status") not in STATUSES:
                problems.append(f"backends[{i}].status: {backend.get('status')!r} is unknown")
    if data["reference"] not in statuses:
        problems.append(f"reference {data['reference']!r} is not among the backends")
    for i, row in enumerate(data["latency"]):
        check(row, LATENCY_KEYS, f"latency[{i}]")
        if not isinstance(row, Mapping):
            continue
        status = statuses.get(row.get("backend"))
        if status is None:
            problems.append(f"latency[{i}]: backend {row.get('backend')!r} is not listed")
        elif status not in TIMEABLE and row.get("speedup_vs_torch_fp32") is not None:
            problems.append(f"latency[{i}]: {status} backend {row['backend']!r} has a speed-up")
    for section in ("preprocessing", "end_to_end"):
        for i, row in enumerate(data[section]):
            check(row, STAGE_KEYS, f"{section}[{i}]")
    for batch, name in data["fastest"].items():
        if statuses.get(name) not in TIMEABLE:
            problems.append(f"fastest[{batch}] is {name!r}, which did not pass parity")
    return problems


# --- formatting ------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _memory(peak: Mapping[str, Any] | None) -> str:
    if not peak:
        return "-"
    value = peak.get("bytes")
    if value is None:
        return "-"
    text = f"{value / (1 << 20):.0f} MiB {peak.get('kind', '')}".strip()
    above = peak.get("above_idle_bytes")
    return text if above is None else f"{text} (+{above / (1 << 20):.0f})"


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(r) for r in rows)]


def format_table(report: BenchReport) -> str:
    """The on-screen report: parity per backend, latency per backend and batch, the fastest
    passing backend per batch, preprocessing and end-to-end times."""
    from .machine import summary

    model = report.model
    trained = model.get("trained")
    lines = [
        f"saliq bench: {model.get('name')} ({model.get('kind')}: {model.get('source')}; "
        f"{model.get('architecture')}, input {model.get('input')}, "
        f"{'trained' if trained else 'untrained' if trained is False else 'training unknown'})",
        f"machine: {summary(report.machine)}",
        "",
    ]
    settings = report.settings
    untrained = not trained
    lines.append(
        f"parity against {report.reference} on {settings.get('parity_images')} images "
        f"({settings.get('parity_source')})"
        + (
            ": untrained model, so only absolute differences are gated and shown (ranks and "
            "map correlations of random weights mean nothing)"
            if untrained
            else ": score tolerance per precision, rank order and saliency CC >= 0.99 gated"
        )
    )
    header = ["backend", "precision", "status", "max|d score|", "mean|d score|", "max|d sal|"]
    if not untrained:
        header += ["SRCC", "sal CC min"]
    header.append("tolerance")
    rows = []
    for b in report.backends:
        p = b.parity or {}
        status = b.status if b.status != REFERENCE else "reference"
        row = [
            b.name,
            b.precision,
            status,
            _num(p.get("max_score_diff"), ".1e"),
            _num(p.get("mean_score_diff"), ".1e"),
            _num(p.get("max_saliency_diff"), ".1e"),
        ]
        if not untrained:
            row += [_num(p.get("srcc"), ".4f"), _num(p.get("saliency_cc_min"), ".4f")]
        row.append(_num(p.get("tolerance"), "g"))
        rows.append(row)
    lines += _table(header, rows, right=set(range(3, len(header))))
    for b in report.backends:
        if b.status in (FAILED, SKIPPED, ERROR) and b.reason:
            lines.append(f"  {b.name}: {b.status}: {b.reason}")

    lines += [
        "",
        "latency of the network (ms over the timed runs; speed-up: p50 of PyTorch fp32 "
        "on the same device / p50)",
    ]
    header = [
        "backend",
        "batch",
        "p50",
        "p90",
        "p99",
        "img/s",
        "x torch fp32",
        "peak memory",
        "runs",
        "clock",
        "io",
    ]
    rows = []
    for row in report.latency:
        backend = report.backend(row.backend)
        if backend is not None and not backend.timeable:
            rows.append([row.backend, str(row.batch), "FAILED", "", "", "", "", "", "", "", ""])
            continue
        rows.append(
            [
                row.backend,
                str(row.batch),
                _num(row.p50_ms),
                _num(row.p90_ms),
                _num(row.p99_ms),
                _num(row.throughput_ips, ".1f"),
                _num(report.speedup(row), ".2f"),
                _memory(row.peak_memory),
                str(row.runs),
                row.clock,
                row.io,
            ]
        )
    timed = {r.backend for r in report.latency}
    for b in report.backends:
        if b.status == FAILED and b.name not in timed:
            rows.append([b.name, "all", "FAILED", "", "", "", "", "", "", "", ""])
    lines += _table(header, rows, right={1, 2, 3, 4, 5, 6, 8})
    fastest = report.fastest()
    if fastest:
        lines.append(
            "fastest that passed parity: "
            + ", ".join(f"batch {batch}: {name}" for batch, name in fastest.items())
        )
    for title, section in (
        ("preprocessing, one frame (ms)", report.preprocessing),
        ("end to end, one frame to a score (ms)", report.end_to_end),
    ):
        if not section:
            continue
        lines += ["", title]
        header = ["name", "input", "via", "p50", "p90", "p99", "runs", "clock"]
        rows = [
            [
                r.name,
                r.input,
                r.via,
                *(
                    ["error", "", ""]
                    if r.error
                    else [_num(r.p50_ms), _num(r.p90_ms), _num(r.p99_ms)]
                ),
                str(r.runs),
                r.clock,
            ]
            for r in section
        ]
        lines += _table(header, rows, right={3, 4, 5, 6})
        lines += [f"  {r.name} @ {r.input}: error: {r.error}" for r in section if r.error]
    if report.notes:
        lines += ["", *(f"note: {n}" for n in report.notes)]
    return "\n".join(lines)


def summary_markdown(documents: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of bench JSON documents, one row per model and backend, each naming
    its machine: what the README's latency table and the latency columns of docs/models.md
    are generated from (``python -m saliq.bench.report benchmarks/results/*/bench_*.json``).
    p50 latencies at batch 1 and at the largest batch measured; a backend that did not pass
    parity shows its status instead of numbers."""
    lines = [
        "| model | machine | backend | precision | parity (max \\|d score\\|) "
        "| p50 batch 1 (ms) | p50 largest batch (ms) | img/s | x torch fp32 (batch 1) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for doc in documents:
        problems = validate_report(doc)
        if problems:
            raise ValueError(f"not a saliq bench report: {problems[0]}")
        machine = doc["machine"]
        gpus = machine.get("gpus") or []
        where = f"{machine.get('slug')}: " + (
            str(gpus[0].get("name")) if gpus else str(machine.get("cpu_model"))
        )
        threads = (machine.get("threads") or {}).get("requested")
        if threads:
            where += f", {threads} threads"
        rows = doc["latency"]
        for backend in doc["backends"]:
            name, status = backend["name"], backend["status"]
            parity = backend.get("parity") or {}
            verdict = (
                status
                if status != PASSED
                else f"passed ({_num(parity.get('max_score_diff'), '.1e')})"
            )
            mine = sorted((r for r in rows if r["backend"] == name), key=lambda r: r["batch"])
            if status not in TIMEABLE or not mine:
                cells = ["-", "-", "-", "-"]
            else:
                first = next((r for r in mine if r["batch"] == 1), None)
                last = mine[-1]
                cells = [
                    _num(first["p50_ms"]) if first else "-",
                    f"{_num(last['p50_ms'])} (batch {last['batch']})",
                    _num(last["throughput_ips"], ".1f"),
                    _num(first.get("speedup_vs_torch_fp32")) if first else "-",
                ]
            lines.append(
                f"| {doc['model']['name']} | {where} | {name} | {backend['precision']} | "
                f"{verdict} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m saliq.bench.report FILE.json ...``: print :func:`summary_markdown`."""
    import sys

    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m saliq.bench.report bench_*.json ...", file=sys.stderr)
        return 2
    documents = [json.loads(Path(p).read_text()) for p in paths]
    print(summary_markdown(documents))
    return 0


__all__ = [
    "ERROR",
    "FAILED",
    "PASSED",
    "REFERENCE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SKIPPED",
    "STATUSES",
    "TOLERANCES",
    "BackendResult",
    "BenchReport",
    "LatencyRow",
    "StageRow",
    "clean_json",
    "evaluate_parity",
    "format_table",
    "one_line_error",
    "summary_markdown",
    "tolerance_for",
    "validate_report",
]


if __name__ == "__main__":
    raise SystemExit(main())
