"""ONNX Runtime backend: best provider present (TensorRT EP, CUDA EP, then CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelFormatError
from ..spec import ModelSpec
from .base import Backend

PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(
            "onnxruntime is not installed: pip install 'saliq[cpu]' "
            "(or onnxruntime-gpu on a GPU machine, never both)"
        ) from None
    return onnxruntime


def read_onnx_spec(path: str | Path) -> ModelSpec:
    """Read the ModelSpec from an ONNX file's metadata without building a session."""
    ort = _ort()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelFormatError(f"{path}: not a loadable ONNX model ({str(exc)[:120]})") from None
    return _spec_of(session, path)


def _spec_of(session, path) -> ModelSpec:
    spec = ModelSpec.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    spec.check_graph(
        {i.name: i.shape for i in session.get_inputs()},
        {o.name: o.shape for o in session.get_outputs()},
        source=str(path),
    )
    return spec


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int = 0):
        ort = _ort()
        available = ort.get_available_providers()
        chosen = providers or [p for p in PROVIDER_PREFERENCE if p in available]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:
            raise ModelFormatError(
                f"{path}: not a loadable ONNX model ({str(exc)[:120]})"
            ) from None
        spec = _spec_of(self.session, path)
        active = self.session.get_providers()[0]
        super().__init__(spec, device="cpu" if active == "CPUExecutionProvider" else "cuda")
        self.provider = active
        self.output_names = [o.name for o in self.session.get_outputs()]
        # On a GPU provider, say where inputs and outputs live (IOBinding) instead of letting
        # session.run guess: host inputs are copied to the GPU once, outputs are produced in
        # CUDA memory and fetched after the run. On CPU (None) the plain run is unchanged.
        self.binding_device: str | None = "cuda" if active in GPU_PROVIDERS else None

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.binding_device is None:
            values = self.session.run(self.output_names, inputs)
            return dict(zip(self.output_names, values))
        binding = self.session.io_binding()  # per call: bindings are not shared across threads
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        for name in self.output_names:
            binding.bind_output(name, self.binding_device)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))

    def _close(self) -> None:
        self.session = None
