"""Frames -> GPU preprocessing -> TensorRT, with the model inputs never leaving the GPU.

Where the native extension was built with CUDA, a GPU is usable and the backend runs on
device inputs (``TensorRTBackend.infer_device``), the Assessor preprocesses with the CUDA
kernels (``Preprocessor.cuda``) into device buffers, which the engine copies device-to-device
into its bound inputs: a host frame crosses to the GPU once, as uint8 pixels, and a frame
already on the engine's GPU (CuPy, a PyTorch CUDA tensor, DLPack) is read in place. Only the
model's outputs come back.

Each calling thread gets its own stream and buffers (for the engine's largest batch, or the
Assessor's if smaller), like the TensorRT backend's execution contexts, and under the same cap
(``max_contexts``). The buffers are reusable as soon as ``infer_device`` returns: it
synchronises its own stream after copying them into the engine's inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import BackendUnavailableError, InvalidImageError
from .imageio import is_device_frame
from .preprocess import Preprocessor, native_module
from .spec import PREPROCESSING_OUTPUTS, ModelSpec

# Outputs the CUDA kernels write in float32 whatever the preprocessing dtype (as on the host).
ALWAYS_FLOAT32 = frozenset({"crop_boxes", "crop_weights", "grid_boxes"})


def written_outputs(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Per-frame shapes of every array the preprocessing writes for ``spec`` (a superset of the
    model's inputs: ``Preprocessor.cuda(out=...)`` needs a buffer for each)."""
    produced = PREPROCESSING_OUTPUTS[spec.preprocessing_version]
    shapes = {name: shape_of(spec) for name, shape_of in produced.items()}
    if spec.preprocessing_version >= 2:
        from .views import CROP_INPUTS, GRID_INPUTS, ViewConfig

        views = ViewConfig.from_dict(spec.view_config)
        dropped = () if views.detail_crops else CROP_INPUTS
        if not views.detail_crops or not views.grid_crops:
            dropped += GRID_INPUTS
        for name in dropped:
            shapes.pop(name, None)
    return shapes


def unavailable_reason(backend: Any) -> str:
    """Why this backend cannot take GPU-preprocessed inputs here ("" when it can)."""
    if not callable(getattr(backend, "infer_device", None)):
        return f"the {backend.name} backend takes host inputs"
    native = native_module()
    if native is None:
        return "saliq._preproc is not built"
    try:
        if callable(getattr(backend, "use_device", None)):
            backend.use_device()  # the kernels must suit the engine's GPU, not another
        reason = native.cuda_unavailable_reason()
    except Exception as exc:  # a broken driver: report it, the host path still works
        reason = f"{type(exc).__name__}: {exc}"
    if reason:
        return reason
    dtypes = _engine_dtypes(backend)
    written = _written_dtype(dtypes.get("image", np.dtype(np.float32)))
    for name, dtype in dtypes.items():
        want = np.dtype(np.float32) if name in ALWAYS_FLOAT32 else written
        if dtype != want:
            return f"the engine takes {name!r} as {dtype}; the CUDA preprocessing writes {want}"
    return ""


def _engine_dtypes(backend: Any) -> dict[str, np.dtype]:
    declared = getattr(backend, "input_dtypes", None) or {}
    return {name: np.dtype(declared.get(name, np.float32)) for name in backend.spec.inputs}


def _written_dtype(image_dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float16) if image_dtype == np.float16 else np.dtype(np.float32)


@dataclass(frozen=True)
class DeviceTensor:
    """A C-contiguous array in device memory, offered as ``__cuda_array_interface__`` (v3).

    ``stream`` None tells the reader no wait is needed: whoever writes it names its stream to
    the reader explicitly (``infer_device(..., stream=)``).
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "version": 3,
            "strides": None,
            "stream": None,
        }


class _ThreadBuffers:
    """One thread's stream and device buffers for up to ``capacity`` frames."""

    def __init__(self, api: Any, shapes: dict[str, tuple[int, ...]], dtypes, capacity: int):
        self.stream = api.Stream()
        self.buffers: dict[str, Any] = {}
        self.shapes, self.dtypes = shapes, dtypes
        try:
            for name, shape in shapes.items():
                nbytes = capacity * int(np.prod(shape)) * dtypes[name].itemsize
                self.buffers[name] = api.DeviceBuffer(nbytes)
        except BaseException:
            self.close()
            raise

    def views(self, count: int) -> dict[str, DeviceTensor]:
        return {
            name: DeviceTensor(buffer.ptr, (count, *self.shapes[name]), self.dtypes[name])
            for name, buffer in self.buffers.items()
        }

    def close(self) -> None:
        try:
            self.stream.synchronize()  # a call that failed midway may have left work queued
        except Exception:
            pass  # a broken stream: free the rest anyway
        for buffer in self.buffers.values():
            buffer.free()
        self.buffers.clear()
        self.stream.close()


class DevicePipeline:
    """GPU preprocessing into a device-input backend for batches of up to ``capacity`` frames.

    ``DevicePipeline.open(backend, capacity)`` returns None (and the reason) where this cannot
    run; ``infer(frames)`` takes ``(pixels, fmt)`` pairs, pixels on the host or the device.
    """

    def __init__(self, backend: Any, capacity: int) -> None:
        from .backends.tensorrt import PerThread

        reason = unavailable_reason(backend)
        if reason:
            error = BackendUnavailableError(f"GPU preprocessing unavailable: {reason}")
            error.reason = reason  # type: ignore[attr-defined]  # for open()
            raise error
        self.backend = backend
        # Larger batches than the engine takes would only hold the inputs twice on the GPU.
        self.capacity = max(1, min(int(capacity), int(getattr(backend, "max_batch", capacity))))
        dtypes = _engine_dtypes(backend)
        written = _written_dtype(dtypes.get("image", np.dtype(np.float32)))
        base = Preprocessor.from_spec(backend.spec)
        self.preprocessor = replace(base, dtype=str(written))
        self._shapes = written_outputs(backend.spec)
        self._dtypes = {
            name: np.dtype(np.float32) if name in ALWAYS_FLOAT32 else written
            for name in self._shapes
        }
        self._api = backend.cuda_api
        cap = getattr(backend, "max_contexts", None)  # the engine's cap on per-thread state
        self._threads = PerThread(self._new_buffers, _ThreadBuffers.close, max_items=cap)

    @classmethod
    def open(cls, backend: Any, capacity: int) -> tuple[DevicePipeline | None, str]:
        """(the pipeline, "") where it can run here, else (None, the reason)."""
        try:
            return cls(backend, capacity), ""  # checks once, in __init__
        except BackendUnavailableError as exc:
            return None, getattr(exc, "reason", str(exc))
        except Exception as exc:  # a broken driver or runtime: the host path still works
            return None, f"{type(exc).__name__}: {exc}"

    def _new_buffers(self) -> _ThreadBuffers:
        self.backend.use_device()
        return _ThreadBuffers(self._api, self._shapes, self._dtypes, self.capacity)

    def infer(self, frames: Sequence[tuple[Any, str]]) -> dict[str, np.ndarray]:
        """The model's outputs (host arrays) for ``(pixels, fmt)`` frames, in order."""
        device = getattr(self.backend, "device_index", 0)
        # One kernel call per pixel format and memory (a call takes host or device frames),
        # in chunks the buffers hold.
        groups: dict[tuple[str, bool], list[int]] = {}
        for index, (pixels, fmt) in enumerate(frames):
            on_device = is_device_frame(pixels)
            if on_device:
                check_frame_device(pixels, device, f"array[{index}]")
            groups.setdefault((fmt, on_device), []).append(index)
        self.backend.use_device()
        state = self._threads.get()
        merged: dict[str, np.ndarray] = {}
        for (fmt, _), indices in groups.items():
            for start in range(0, len(indices), self.capacity):
                chunk = indices[start : start + self.capacity]
                out = state.views(len(chunk))
                self.preprocessor.cuda(
                    [frames[i][0] for i in chunk], fmt=fmt, stream=state.stream.handle, out=out
                )
                inputs = {name: out[name] for name in self.backend.spec.inputs}
                outputs = self.backend.infer_device(inputs, stream=state.stream.handle)
                for name, value in outputs.items():
                    if name not in merged:
                        merged[name] = np.empty((len(frames), *value.shape[1:]), value.dtype)
                    merged[name][chunk] = value
        return merged

    def release_thread(self) -> None:
        """Free the calling thread's stream and buffers now (see Assessor.release_thread)."""
        self.backend.use_device()
        self._threads.release_thread()

    def close(self) -> None:
        self.backend.use_device()
        self._threads.close_all()


def check_frame_device(frame: Any, device: int, name: str) -> None:
    """Refuse a GPU frame on another GPU than the engine's (reading it there would be an
    illegal address, which breaks CUDA for the whole process). Frames that only offer
    ``__cuda_array_interface__`` do not say their GPU; they are taken as the engine's."""
    from .dlpack import dlpack_device

    try:
        _, frame_device = dlpack_device(frame)
    except (AttributeError, TypeError, ValueError, RuntimeError, BufferError):
        return
    if frame_device != device:
        raise InvalidImageError(
            f"{name} is on cuda:{frame_device} but the engine runs on cuda:{device}; move it "
            f"there first (tensor.to('cuda:{device}'), or load the engine with device="
            f"{frame_device})"
        )
