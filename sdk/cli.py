"""The ``saliq`` command line. Errors print one line (no traceback) and exit non-zero."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .backends import BACKENDS
from .errors import SaliqError

EXIT_ERROR = 2


def _progress(done: int, total: int) -> None:
    if total > 1 and sys.stderr.isatty():
        sys.stderr.write(f"\rscoring {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_score(args: argparse.Namespace) -> int:
    from .assess import load
    from .imageio import expand_paths

    paths = expand_paths(args.paths)
    assessor = load(
        args.model,
        backend=args.backend,
        threads=args.threads,
        allow_engine_host_code=args.allow_engine_host_code,
    )
    rows, failures = [], 0
    for i, path in enumerate(paths):
        try:
            result = assessor.assess(str(path))
            rows.append({"path": str(path), "score": round(result.score, 4)})
        except SaliqError as exc:
            if len(paths) == 1:
                raise
            failures += 1
            rows.append({"path": str(path), "error": str(exc)})
        _progress(i + 1, len(paths))
    if args.json:
        print(json.dumps({"model": assessor.spec.name, "results": rows}, indent=2))
    else:
        width = max(len(r["path"]) for r in rows)
        print(f"{'image':<{width}}  score")
        for r in rows:
            value = f"{r['score']:.4f}" if "score" in r else f"error: {r['error']}"
            print(f"{r['path']:<{width}}  {value}")
    return EXIT_ERROR if failures else 0


def cmd_train(args: argparse.Namespace) -> int:
    from saliq.train.config import load_config
    from saliq.train.trainer import train

    overrides = dict(_parse_override(item) for item in args.set or [])
    best = train(load_config(args.config, overrides), resume=args.resume)
    print(f"best checkpoint: {best}")
    return 0


def _parse_override(item: str) -> tuple[str, object]:
    import yaml

    key, sep, value = item.partition("=")
    if not sep:
        raise SaliqError(f"--set expects key=value, got {item!r}")
    return key, yaml.safe_load(value)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from saliq.export.onnx import export_onnx

    report = export_onnx(args.checkpoint, args.output, opset=args.opset)
    print(
        f"wrote {report.path} (opset {report.opset}); verified on {report.images} photos: "
        f"max |score diff| {report.max_score_diff:.2e}, max |saliency diff| "
        f"{report.max_saliency_diff:.2e}"
    )
    if report.lint is not None:
        print(report.lint.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from saliq.train.evaluate import main as evaluate_main

    return evaluate_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saliq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score images or folders of images")
    score.add_argument("paths", nargs="+", help="image files or folders")
    score.add_argument("--model", default="default", help="default | model.onnx | ckpt.safetensors")
    score.add_argument("--backend", default="auto", choices=BACKENDS)
    score.add_argument("--threads", type=int, default=0, help="CPU threads (0 = runtime default)")
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    score.add_argument(
        "--allow-engine-host-code",
        action="store_true",
        help="load a version-compatible TensorRT engine (it runs host code embedded in the "
        "plan: only for engines you built or trust)",
    )
    score.set_defaults(func=cmd_score)

    train = sub.add_parser("train", help="train a model from a YAML config")
    train.add_argument("--config", required=True)
    train.add_argument("--resume", action="store_true", help="continue from last.safetensors")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.epochs=2",
    )
    train.set_defaults(func=cmd_train)

    export = sub.add_parser("export", help="export a checkpoint")
    export_sub = export.add_subparsers(dest="format", required=True)
    onnx = export_sub.add_parser("onnx", help="checkpoint -> verified ONNX")
    onnx.add_argument("checkpoint")
    onnx.add_argument("-o", "--output", default=None)
    onnx.add_argument("--opset", type=int, default=17)
    onnx.set_defaults(func=cmd_export_onnx)
    # The other exporters and `doctor` register themselves; their heavy imports stay lazy.
    from saliq.export.cli_triton import register as register_triton
    from saliq.export.cli_trt import register as register_trt

    register_trt(export_sub)
    register_triton(export_sub)

    evaluate = sub.add_parser("evaluate", help="held-out synthetic + saliency evaluation")
    from saliq.train.evaluate import add_arguments  # argparse only: no torch import

    add_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    from .doctor import register as register_doctor

    register_doctor(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SaliqError as exc:
        print(f"saliq: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("saliq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
