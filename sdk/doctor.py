"""``saliq doctor``: what this machine can run, and why not where it cannot.

Every check catches its own failures, so the report always completes: a machine without a
GPU, TensorRT or torch gets a row saying "no" and the reason, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from collections.abc import Callable

OK, NO, ERROR = "ok", "no", "error"
Row = tuple[str, str, str]  # (check, status, detail)


def _python() -> Row:
    from . import __version__

    return (
        "python",
        OK,
        f"{platform.python_version()} on {platform.machine()} {platform.system()}; "
        f"saliq {__version__}",
    )


def _cuda_driver() -> Row:
    from .cuda_memory import cuda_api

    try:
        return "CUDA driver", OK, f"supports CUDA {cuda_api().driver_version()}"
    except ImportError as exc:  # BackendUnavailableError is an ImportError
        return "CUDA driver", NO, str(exc)


def _gpus() -> Row:
    from .cuda_memory import cuda_api

    try:
        api = cuda_api()
        count = api.device_count()
    except ImportError as exc:
        return "GPU", NO, str(exc)
    if count == 0:
        return "GPU", NO, "no CUDA device visible (check CUDA_VISIBLE_DEVICES)"
    capabilities = ", ".join(f"#{i}: sm {api.compute_capability(i)}" for i in range(count))
    return "GPU", OK, f"{count} device(s): {capabilities}"


def _tensorrt() -> Row:
    from .backends.tensorrt import tensorrt_version

    try:
        return "TensorRT", OK, tensorrt_version()
    except ImportError as exc:
        return "TensorRT", NO, str(exc)


def _onnxruntime() -> Row:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime", NO, "not installed: pip install 'saliq[cpu]' (or onnxruntime-gpu)"
    providers = ", ".join(ort.get_available_providers())
    return "onnxruntime", OK, f"{ort.__version__}; providers: {providers}"


def _opencv() -> Row:
    try:
        import cv2
    except ImportError:
        return (
            "opencv",
            NO,
            "not installed (image decoding, preprocessing): pip install 'saliq[cpu]' "
            "(or your platform's OpenCV build)",
        )
    return "opencv", OK, str(cv2.__version__)


def _onnx() -> Row:
    try:
        import onnx
    except ImportError:
        return (
            "onnx",
            NO,
            "not installed (only `saliq export` needs it): pip install 'saliq[export]'",
        )
    return "onnx", OK, f"{onnx.__version__} (saliq export onnx|trt|triton)"


def _preproc() -> Row:
    try:
        # By name: the compiled extension is optional and ships no type stubs.
        _preproc = importlib.import_module(f"{__package__}._preproc")
    except ImportError as exc:
        return "preprocessing on GPU", NO, f"saliq._preproc not built ({exc}); reinstall saliq"
    if not _preproc.built_with_cuda:
        return "preprocessing on GPU", NO, "CPU twin only (built without nvcc or SALIQ_CUDA=0)"
    if not _preproc.cuda_available():
        return (
            "preprocessing on GPU",
            NO,
            f"built with CUDA, not usable here: {_preproc.cuda_unavailable_reason()}",
        )
    return "preprocessing on GPU", OK, "CUDA kernel usable"


def _binding(name: str) -> Row:
    from .cuda_memory import INSTALL_HINT, available_implementations

    status = available_implementations()[name]
    if status != "ok":
        hint = f"; {INSTALL_HINT}" if name == "cuda-python" else ""
        return name, NO, f"{status}{hint}"
    if name == "cuda-python":
        from cuda import bindings

        version = getattr(bindings, "__version__", "?")
    else:
        import pycuda

        version = getattr(pycuda, "VERSION_TEXT", "?")
    return name, OK, f"{version} (importable)"


_TORCH_CUDA_USABLE = "usable"  # ends the torch row's detail when CUDA works: read by summary()


def _torch() -> Row:
    try:
        import torch
    except ImportError:
        return "torch", NO, "not installed (only needed for training and .safetensors models)"
    if torch.cuda.is_available():
        return "torch", OK, f"{torch.__version__}, CUDA {torch.version.cuda} {_TORCH_CUDA_USABLE}"
    built = torch.version.cuda or "none (CPU build)"
    return "torch", OK, f"{torch.__version__}, CUDA build {built}, no usable GPU"


CHECKS: tuple[tuple[str, Callable[[], Row]], ...] = (
    ("python", _python),
    ("CUDA driver", _cuda_driver),
    ("GPU", _gpus),
    ("TensorRT", _tensorrt),
    ("onnxruntime", _onnxruntime),
    ("opencv", _opencv),
    ("onnx", _onnx),
    ("preprocessing on GPU", _preproc),
    ("cuda-python", lambda: _binding("cuda-python")),
    ("pycuda", lambda: _binding("pycuda")),
    ("torch", _torch),
)


def report() -> list[Row]:
    """One (check, status, detail) row per check; status is "ok", "no" or "error"."""
    rows = []
    for name, check in CHECKS:
        try:
            rows.append(check())
        except Exception as exc:  # a doctor must finish even when a probe itself breaks
            rows.append((name, ERROR, f"{type(exc).__name__}: {exc}"))
    return rows


def capabilities(rows: list[Row]) -> dict[str, bool]:
    """What saliq can run here, derived from the check rows: {capability: works}, in the
    order the summary line lists them."""
    status = {check: state for check, state, _ in rows}
    detail = {check: text for check, _, text in rows}

    def ok(*checks: str) -> bool:
        return all(status.get(check) == OK for check in checks)

    providers = detail.get("onnxruntime", "") if ok("onnxruntime") else ""
    gpu = ok("CUDA driver", "GPU")
    return {
        "ONNX Runtime on CPU": "CPUExecutionProvider" in providers,
        "ONNX Runtime on CUDA": gpu and "CUDAExecutionProvider" in providers,
        # The TensorRT backend moves buffers itself, through either CUDA binding.
        "TensorRT": gpu and ok("TensorRT") and (ok("cuda-python") or ok("pycuda")),
        "PyTorch on CPU": ok("torch"),
        "PyTorch on CUDA": ok("torch") and detail["torch"].endswith(_TORCH_CUDA_USABLE),
        "CPU preprocessing": ok("opencv"),
        "CUDA preprocessing": gpu and ok("preprocessing on GPU"),
    }


def summary(rows: list[Row]) -> str:
    """One line: ``this machine can run: A, B; not: C, D``."""
    works = capabilities(rows)
    line = "this machine can run: " + (", ".join(k for k, v in works.items() if v) or "nothing")
    missing = [name for name, usable in works.items() if not usable]
    return line + (f"; not: {', '.join(missing)}" if missing else "")


def format_table(rows: list[Row]) -> str:
    width = max(len(check) for check, _, _ in rows)
    lines = [f"{'check':<{width}}  status  detail"]
    lines += [f"{check:<{width}}  {status:<6}  {detail}" for check, status, detail in rows]
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    rows = report()
    if args.json:
        payload = [{"check": c, "status": s, "detail": d} for c, s, d in rows]
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(rows))
        print(summary(rows))
    return 0  # informative: "no" rows are facts about the machine, not failures


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``saliq doctor`` to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "doctor",
        help="report CUDA, GPU, TensorRT, onnxruntime, OpenCV, onnx and torch availability",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saliq")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
