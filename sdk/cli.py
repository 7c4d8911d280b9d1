"""The ``saliq`` command line. Errors print one line (no traceback) and exit non-zero.

Each command's module is imported only when that command runs: ``saliq --help`` and ``saliq
score`` import neither the training code (``saliq.train``) nor the exporters
(``saliq.export``), so the runtime works where only the runtime is installed. The parser
lists every command from :data:`COMMANDS` (name and help) and fills in the arguments of the
one on the command line alone, from the module that owns it.

SIGTERM (``kill``, a container stop, torchrun ending its workers) becomes an exception in the
main thread, so ``finally`` blocks and ``with`` blocks run: a command interrupted while writing
leaves no hidden temporary file behind (:func:`saliq.atomic.atomic_path`). Exit status 143.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from .errors import SaliqError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a SIGTERM death

# name -> (one-line help, the function that adds the command's subparser: "module:function",
# or a bare name for one defined below; looked up when the command runs)
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("score images or folders of images", "register_score"),
    "train": ("train a model from a YAML config", "register_train"),
    "export": ("export a model: onnx, trt (TensorRT), triton", "register_export"),
    "evaluate": ("held-out synthetic + saliency evaluation", "register_evaluate"),
    "convert-weights": (
        "PyTorch .pth/.pt weights -> .safetensors (the only pickle saliq reads)",
        "register_convert_weights",
    ),
    "ablate": (
        "train every ablation row of a model family (configs/FAMILY/) and write one table",
        "saliq.train.ablate:register",
    ),
    "bench": (
        "latency and parity against PyTorch fp32 per backend, precision and batch size",
        "saliq.bench.cli:register",
    ),
    "explain": (
        "explain a score: saliency, HiResCAM/GradCAM, gradient maps, region scores (a PNG)",
        "saliq.train.explain.cli:register",
    ),
    "doctor": (
        "report CUDA, GPU, TensorRT, onnxruntime, OpenCV, onnx and torch availability",
        "saliq.doctor:register",
    ),
}
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "onnx": ("checkpoint -> verified ONNX", "register_export_onnx"),
    "trt": (
        "ONNX or checkpoint -> TensorRT engine, refused unless it matches ONNX Runtime",
        "saliq.export.cli_trt:register",
    ),
    "triton": (
        "ONNX model or TensorRT engine -> Triton model repository",
        "saliq.export.cli_triton:register",
    ),
}
ALL = None  # build_parser(None): every command's arguments (introspection, docs)
# Which extra brings a third-party module a command may import (setup.py's extras_require),
# for the one-line error when it is missing; otherwise the command's own extra.
MODULE_EXTRAS = {
    "onnx": "export",
    "onnxruntime": "cpu",
    "cv2": "cpu",
    **dict.fromkeys(
        ("torch", "yaml", "tqdm", "scipy", "skimage", "sklearn", "matplotlib", "brisque"), "train"
    ),
}
COMMAND_EXTRAS = {
    "score": "cpu",
    "export": "export",
    "train": "train",
    "evaluate": "train",
    "convert-weights": "train",
    "ablate": "train",
    "explain": "train",
    "bench": "cpu",
}


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM; a SystemExit, so ``except Exception`` code does
    not swallow it while ``finally`` and ``with`` cleanups still run."""


# --- handlers ------------------------------------------------------------------------------


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
            row = {"path": str(path), "score": round(result.score, 4)}
            if result.region_scores is not None:  # crop-view models: where people look vs rest
                row["salient"], row["background"] = (round(v, 4) for v in result.region_scores)
            rows.append(row)
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
        regions = any("salient" in r for r in rows)
        print(f"{'image':<{width}}  score" + ("   salient  background" if regions else ""))
        for r in rows:
            value = f"{r['score']:.4f}" if "score" in r else f"error: {r['error']}"
            if regions and "salient" in r:
                value += f"   {r['salient']:.4f}   {r['background']:.4f}"
            print(f"{r['path']:<{width}}  {value}")
    return EXIT_ERROR if failures else 0


def train_overrides(args: argparse.Namespace) -> dict[str, object]:
    """``--set key=value`` items, then ``--device``/``--precision`` (the flags win)."""
    overrides = dict(_parse_override(item) for item in args.set or [])
    for key in ("device", "precision"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from saliq.train.config import load_config
    from saliq.train.trainer import train

    best = train(load_config(args.config, train_overrides(args)), resume=args.resume)
    print(f"best checkpoint: {best}")
    return 0


def _parse_override(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SaliqError(f"--set expects key=value, got {item!r}")
    import yaml

    return key, yaml.safe_load(value)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from saliq.export.onnx import export_onnx

    report = export_onnx(args.checkpoint, args.output, opset=args.opset)
    print(
        f"wrote {report.path} (opset {report.opset}); verified on {report.images} frames: "
        f"max |score diff| {report.max_score_diff:.2e}, max |saliency diff| "
        f"{report.max_saliency_diff:.2e}"
    )
    if report.lint is not None:
        print(report.lint.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from saliq.train.evaluate import main as evaluate_main

    return evaluate_main(args)


def cmd_convert_weights(args: argparse.Namespace) -> int:
    from saliq.train.convert_weights import convert_pth

    dst = convert_pth(args.src, args.dst, backbone=args.backbone)
    checked = f", keys and shapes checked against {args.backbone}" if args.backbone else ""
    print(f"wrote {dst}{checked}")
    return 0


# --- registration (each called only for the command being run) -----------------------------


def register_score(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from .backends import BACKENDS

    score = sub.add_parser("score", help=COMMANDS["score"][0])
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
    return score


def register_train(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from saliq.train.config import DEVICES, PRECISIONS  # no torch: names and checks only

    train = sub.add_parser("train", help=COMMANDS["train"][0])
    train.add_argument("--config", required=True)
    train.add_argument("--resume", action="store_true", help="continue from last.safetensors")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.epochs=2",
    )
    train.add_argument(
        "--device",
        choices=DEVICES,
        default=None,
        help="overrides the config's device (auto: CUDA when available, else CPU)",
    )
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="overrides the config's precision (auto: bf16/fp16 autocast on a GPU, fp32 on CPU)",
    )
    train.set_defaults(func=cmd_train)
    return train


def register_export_onnx(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    onnx = sub.add_parser("onnx", help=EXPORT_FORMATS["onnx"][0])
    onnx.add_argument("checkpoint")
    onnx.add_argument("-o", "--output", default=None)
    onnx.add_argument("--opset", type=int, default=17)
    onnx.set_defaults(func=cmd_export_onnx)
    return onnx


def register_export(
    sub: argparse._SubParsersAction, argv: Sequence[str] | None = ALL
) -> argparse.ArgumentParser:
    """``saliq export FORMAT``: only the named format's module is imported."""
    export = sub.add_parser("export", help=COMMANDS["export"][0])
    formats = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    _add_commands(formats, EXPORT_FORMATS, argv)
    return export


def register_evaluate(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from saliq.train.evaluate import add_arguments  # argparse only: no torch import

    evaluate = sub.add_parser("evaluate", help=COMMANDS["evaluate"][0])
    add_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)
    return evaluate


def register_convert_weights(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    convert = sub.add_parser("convert-weights", help=COMMANDS["convert-weights"][0])
    convert.add_argument("src", help="state dict saved with torch.save (.pth/.pt)")
    convert.add_argument("dst", help="output .safetensors file")
    convert.add_argument(
        "--backbone",
        default=None,
        help="check keys and shapes against this backbone (e.g. resnet50, vgg16) first",
    )
    convert.set_defaults(func=cmd_convert_weights)
    return convert


# --- the parser ----------------------------------------------------------------------------


def _first_word(argv: Sequence[str]) -> str | None:
    """The first token that is not an option (the subcommand), if any."""
    return next((token for token in argv if not token.startswith("-")), None)


def _load(target: str) -> Callable[..., argparse.ArgumentParser]:
    module, _, function = target.rpartition(":")
    # Bare names resolve here, so ``python -m saliq.cli`` (this file as __main__) uses its own
    # functions instead of importing a second copy of the module.
    return getattr(importlib.import_module(module), function) if module else globals()[function]


def _add_commands(
    sub: argparse._SubParsersAction,
    table: dict[str, tuple[str, str]],
    argv: Sequence[str] | None,
) -> None:
    """Register every command of ``table``: in full the one ``argv`` names (or all when
    ``argv`` is ALL), and as a name with its help line otherwise."""
    chosen = _first_word(argv) if argv is not ALL else None
    for name, (help_text, target) in table.items():
        if argv is not ALL and name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        register = _load(target)
        if target == "register_export":  # the one command with subcommands of its own
            rest = ALL if argv is ALL else list(argv)[list(argv).index(name) + 1 :]
            register(sub, rest)
        else:
            register(sub)


def build_parser(argv: Sequence[str] | None = ALL) -> argparse.ArgumentParser:
    """The parser for ``argv`` (only its command's module is imported); every command's
    arguments when ``argv`` is None."""
    parser = argparse.ArgumentParser(
        prog="saliq",
        description="Saliency-guided no-reference image quality assessment for the edge.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(sub, COMMANDS, argv)
    return parser


# --- signals and main ----------------------------------------------------------------------


def _on_sigterm(signum: int, frame: object) -> None:
    # A second SIGTERM during the cleanups kills at once (the default action).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated(EXIT_TERMINATED)


def _install_sigterm() -> object | None:
    """Turn SIGTERM into :class:`Terminated`; returns the previous handler (None when not in
    the main thread, where Python cannot install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def missing_module_message(exc: ModuleNotFoundError, command: str | None) -> str:
    """One line naming the missing package and the extra that installs it."""
    module = (exc.name or "?").split(".")[0]
    extra = MODULE_EXTRAS.get(module) or COMMAND_EXTRAS.get(command or "", "cpu")
    if module == "torch":
        fix = f"pip install torch==2.13.0 (the CPU build; or a CUDA build), then 'saliq[{extra}]'"
    else:
        fix = f"pip install 'saliq[{extra}]'"
    return f"`saliq {command}` needs the {module!r} package, which is not installed: {fix}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = _install_sigterm()
    try:
        args = build_parser(argv).parse_args(argv)
        return int(args.func(args))
    except SaliqError as exc:
        print(f"saliq: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "saliq":
            raise  # a broken saliq install or a bug: keep the traceback
        print(f"saliq: error: {missing_module_message(exc, _first_word(argv))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("saliq: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("saliq: terminated (SIGTERM); partial outputs were removed", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
