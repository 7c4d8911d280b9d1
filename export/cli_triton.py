"""``saliq export triton``: the subcommand; sdk/cli.py calls ``register`` on ``saliq export``."""

from __future__ import annotations

import argparse
from typing import Any

from saliq.cli import DEFAULT_MODEL, resolve_export_model


def cmd_export_triton(args: argparse.Namespace) -> int:
    from saliq.export.triton import PREPROCESS_SUFFIX, export_triton

    # Triton serves ONNX or an engine: "default" is the shipped model's ONNX export.
    model, _ = resolve_export_model(args.model, None, "onnx")
    folder = export_triton(
        model,
        args.repository,
        name=args.name,
        max_batch=args.max_batch,
        preprocessing=not args.no_preprocessing,
        instance_count=args.instances,
        kind=args.kind,
        overwrite=args.overwrite,
        instance_kind="KIND_CPU" if args.cpu else "KIND_GPU",
        frame_format=args.frame_format,
        max_queue_delay_us=args.max_queue_delay_us,
    )
    name = folder.name
    print(f"wrote Triton model {name!r} to {folder}")
    if not args.no_preprocessing:
        print(
            f"  + {name}{PREPROCESS_SUFFIX} (Python backend: needs saliq installed there) and "
            f"{name}_ensemble (send uint8 FRAME [N,h,w,3], get score/saliency)"
        )
    print(f"serve: tritonserver --model-repository {folder.parent}")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "triton", help="ONNX model or TensorRT engine -> Triton model repository"
    )
    parser.add_argument(
        "model",
        help=f"model.onnx (saliq export onnx), model.engine/.plan, or {DEFAULT_MODEL!r} for the "
        "shipped default model (its ONNX)",
    )
    parser.add_argument("repository", help="Triton model repository folder (created if absent)")
    parser.add_argument("--name", default=None, help="model name (default: the spec's name)")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--instances", type=int, default=1, help="instance_group count")
    parser.add_argument("--kind", default="auto", choices=["auto", "onnx", "tensorrt"])
    parser.add_argument("--cpu", action="store_true", help="KIND_CPU instances (no GPU)")
    parser.add_argument(
        "--no-preprocessing", action="store_true", help="network only, no Python/ensemble"
    )
    parser.add_argument("--frame-format", default="BGR", choices=["BGR", "RGB"])
    parser.add_argument("--max-queue-delay-us", type=int, default=100)
    parser.add_argument("--overwrite", action="store_true", help="replace existing folders")
    parser.set_defaults(func=cmd_export_triton)
    return parser
