"""``saliq bench MODEL``: latency and parity against PyTorch fp32, per backend and precision.

This module is the command line alone: its arguments, :class:`BenchSettings` made from them,
``register`` (``saliq bench``) and ``main`` (``python -m saliq.train.bench.cli``). The run lives in
the modules it calls, one job each (docs/bench.md describes a run):

* :mod:`saliq.train.bench.settings`: :class:`BenchSettings` and the defaults;
* :mod:`saliq.train.bench.models`: MODEL (default, architecture, checkpoint, ONNX, engine) to files;
* :mod:`saliq.train.bench.plans`: which backends and precisions run here, opening their runners;
* :mod:`saliq.train.bench.parity`: the photos, and every backend gated against the reference;
* :mod:`saliq.train.bench.latency`, :mod:`saliq.train.bench.memory`: latency, peak memory;
* :mod:`saliq.train.bench.stages`: preprocessing and end-to-end timings;
* :mod:`saliq.train.bench.run`: one run in order (parity, then timing), and its output files.

Importing this module imports no runtime and no training code: torch and ``saliq.train`` are
imported only when a checkpoint or an architecture is benchmarked.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

from saliq.bench.machine import pin_threads
from saliq.bench.report import ERROR, FAILED
from saliq.errors import ConfigError, SaliqError

# Besides what the command uses, the names this module exported before the run moved into
# the modules listed above are imported here (and in __all__), so code written against
# ``saliq.train.bench.cli`` keeps working.
from .latency import time_latency
from .memory import measure_peak_memory
from .models import ModelArtifacts, resolve_model
from .parity import parity_frames, preprocess_frames, run_parity
from .plans import Plan, build_plans
from .run import run_bench, write_outputs
from .settings import (
    DEFAULT_BATCHES,
    DEFAULT_PARITY_IMAGES,
    DEFAULT_ROW_SECONDS,
    DEFAULT_RUNS,
    DEFAULT_WARMUP,
    MIN_RUNS,
    QUICK_BATCHES,
    QUICK_PARITY_IMAGES,
    QUICK_ROW_SECONDS,
    QUICK_RUNS,
    QUICK_WARMUP,
    BenchSettings,
)
from .stages import time_stages

HELP = "latency and parity against PyTorch fp32 per backend, precision and batch size"


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
    """``python -m saliq.train.bench.cli MODEL ...``: the same as ``saliq bench MODEL ...``."""
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
    "HELP",
    "QUICK_BATCHES",
    "BenchSettings",
    "ModelArtifacts",
    "Plan",
    "add_arguments",
    "build_plans",
    "cmd_bench",
    "main",
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
