"""Backends behind one interface; heavy runtimes are imported only when chosen."""

from __future__ import annotations

from pathlib import Path

from ..errors import BackendUnavailableError, ModelFormatError
from .base import Backend

BACKENDS = ("auto", "onnxruntime", "torch")
_SUFFIX_BACKEND = {".onnx": "onnxruntime", ".safetensors": "torch"}
_ENGINE_SUFFIXES = (".engine", ".plan")


def load_backend(path: str | Path, backend: str = "auto", threads: int = 0) -> Backend:
    """Open a model artifact with the requested backend (``auto``: picked from the file)."""
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise ModelFormatError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix in _ENGINE_SUFFIXES:
        raise BackendUnavailableError(
            f"{path}: TensorRT engines are not supported by this saliq release; "
            "use the .onnx model with backend='onnxruntime'"
        )
    if backend == "auto":
        backend = _SUFFIX_BACKEND.get(suffix, "")
        if not backend:
            raise ModelFormatError(
                f"{path}: unknown model file type {suffix!r}; pass a saliq .onnx or .safetensors"
            )
    if backend == "onnxruntime":
        if suffix != ".onnx":
            raise ModelFormatError(f"{path}: the onnxruntime backend needs an .onnx file")
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, threads=threads)
    if suffix != ".safetensors":
        raise ModelFormatError(f"{path}: the torch backend needs a .safetensors checkpoint")
    from .torch import TorchBackend

    return TorchBackend(path, threads=threads)


__all__ = ["BACKENDS", "Backend", "load_backend"]
