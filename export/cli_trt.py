"""``saliq export trt``: the argparse part; sdk/cli.py calls ``register`` on ``saliq export``."""

from __future__ import annotations

import argparse

from saliq.bench.compare import DEFAULT_MIN_SALIENCY_CC, DEFAULT_TOLERANCE
from saliq.cli import DEFAULT_MODEL, resolve_export_model

# Duplicated from export/tensorrt.py on purpose: building the parser must not import onnx,
# TensorRT or the exporter itself (``saliq export trt --help`` stays instant).
MIN_PARITY_IMAGES = 64


def register(export_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``trt`` under ``saliq export``'s subparsers; returns the new parser."""
    trt = export_subparsers.add_parser(
        "trt",
        help="ONNX or checkpoint -> TensorRT engine, refused unless it matches ONNX Runtime",
        description=(
            "Build <name>.engine + <name>.engine.json. The engine is scored against ONNX "
            "Runtime on real photos at every distortion level and refused (nothing written) "
            "when scores, rankings or saliency maps drift."
        ),
    )
    trt.add_argument(
        "model",
        help=f"model.onnx, checkpoint.safetensors, or {DEFAULT_MODEL!r} for the shipped default "
        "model (its ONNX export)",
    )
    trt.add_argument(
        "-o",
        "--output",
        default=None,
        help="engine path (default: <model>.engine; ./<name>.engine for the default model)",
    )
    trt.add_argument("--precision", choices=["fp16", "fp32"], default="fp16")
    trt.add_argument("--min-batch", type=int, default=1)
    trt.add_argument("--opt-batch", type=int, default=1, help="batch size tuned for")
    trt.add_argument("--max-batch", type=int, default=8)
    trt.add_argument("--workspace-mib", type=int, default=1024, help="builder workspace limit")
    trt.add_argument(
        "--timing-cache",
        default=None,
        help="file reused across builds (created if missing; rebuilt, with a warning, if it is "
        "corrupt or from another GPU/TensorRT)",
    )
    trt.add_argument(
        "--version-compatible",
        action="store_true",
        help="plan runs on later TensorRT versions (lean runtime; may be slower)",
    )
    trt.add_argument(
        "--hardware-compatible",
        action="store_true",
        help="plan runs on any Ampere or newer GPU (compute capability >= 8.0); discrete GPUs "
        "only (TensorRT does not support it on Jetson)",
    )
    trt.add_argument(
        "--images",
        type=int,
        default=MIN_PARITY_IMAGES,
        help=f"parity photos (>= {MIN_PARITY_IMAGES})",
    )
    trt.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="max |score difference| against ONNX Runtime FP32, on the 0-1 score",
    )
    trt.add_argument(
        "--min-saliency-cc",
        type=float,
        default=DEFAULT_MIN_SALIENCY_CC,
        help="min per-image Pearson CC of saliency maps",
    )
    trt.set_defaults(func=cmd_export_trt)
    return trt


def cmd_export_trt(args: argparse.Namespace) -> int:
    from saliq.engine_sidecar import read_sidecar

    from .tensorrt import build_engine

    # The shipped ONNX is the default checkpoint's verified export: no torch needed to build.
    model, output = resolve_export_model(args.model, args.output, "onnx", ".engine")
    engine = build_engine(
        model,
        output,
        precision=args.precision,
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        workspace_mib=args.workspace_mib,
        timing_cache=args.timing_cache,
        version_compatible=args.version_compatible,
        hardware_compatible=args.hardware_compatible,
        images=args.images,
        tolerance=args.tolerance,
        min_saliency_cc=args.min_saliency_cc,
    )
    sidecar = read_sidecar(engine)
    parity = sidecar.extra.get("parity", {})
    latency = sidecar.extra.get("latency", {})
    print(
        f"wrote {engine} (TensorRT {sidecar.tensorrt_version}, {sidecar.precision}, "
        f"compute capability {sidecar.compute_capability}, batch "
        f"{args.min_batch}-{args.max_batch})"
    )
    print(
        f"parity vs ONNX Runtime FP32 on {parity.get('images')} photos: max |score diff| "
        f"{parity.get('max_score_diff', float('nan')):.2e}, misranked pairs "
        f"{parity.get('misranked_pairs')}, saliency CC min "
        f"{parity.get('min_saliency_cc', float('nan')):.4f}"
    )
    print(
        f"latency (batch {latency.get('batch')}, incl. host copies): median "
        f"{latency.get('median_ms', float('nan')):.2f} ms, "
        f"p90 {latency.get('p90_ms', float('nan')):.2f} ms"
    )
    return 0
