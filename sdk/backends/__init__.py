"""Backends behind one interface; heavy runtimes are imported only when chosen."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError
from .base import Backend

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
_ENGINE_SUFFIXES = (".engine", ".plan")
_SUFFIX_BACKEND = {
    ".onnx": "onnxruntime",
    ".safetensors": "torch",
    **{suffix: "tensorrt" for suffix in _ENGINE_SUFFIXES},
}
_BACKEND_SUFFIXES = {
    "onnxruntime": (".onnx",),
    "torch": (".safetensors",),
    "tensorrt": _ENGINE_SUFFIXES,
}
_WHAT_IT_NEEDS = {
    "onnxruntime": "an .onnx file",
    "torch": "a .safetensors checkpoint",
    "tensorrt": "a TensorRT .engine/.plan built by `saliq export trt`",
}


def backend_for(path: str | Path, backend: str = "auto") -> str:
    """The backend that opens ``path`` (``auto``: decided by the file type), or a clear error."""
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    suffix = path.suffix.lower()
    if backend == "auto":
        backend = _SUFFIX_BACKEND.get(suffix, "")
        if not backend:
            raise ModelFormatError(
                f"{path}: unknown model file type {suffix!r}; pass a saliq .onnx, .safetensors "
                "or .engine"
            )
    if suffix not in _BACKEND_SUFFIXES[backend]:
        raise ModelFormatError(f"{path}: the {backend} backend needs {_WHAT_IT_NEEDS[backend]}")
    return backend


def load_backend(
    path: str | Path,
    backend: str = "auto",
    threads: int = 0,
    device: int = 0,
    cuda_graph: bool = False,
    allow_engine_host_code: bool = False,
    max_contexts: int | None = None,
) -> Backend:
    """Open a model artifact with the requested backend (``auto``: picked from the file).

    ``device``, ``cuda_graph``, ``allow_engine_host_code`` and ``max_contexts`` apply to
    TensorRT engines (the CUDA device index, whether to replay inference as CUDA graphs,
    whether to load a version-compatible engine, which runs host code embedded in the plan,
    and the most per-thread execution contexts alive at once).
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise ModelFormatError(
            f"{path}: model file not found; pass a .onnx, .engine or .safetensors path, or "
            '"default" for the shipped model'
        )
    chosen = backend_for(path, backend)
    if chosen == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(
            path,
            device=device,
            cuda_graph=cuda_graph,
            allow_engine_host_code=allow_engine_host_code,
            max_contexts=max_contexts,
        )
    if chosen == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, threads=threads)
    from .torch import TorchBackend

    return TorchBackend(path, threads=threads)


__all__ = ["BACKENDS", "Backend", "backend_for", "load_backend"]
