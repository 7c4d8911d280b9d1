"""CUDA memory for the runtime: pinned host buffers, device buffers, streams, events, copies.

One small interface (:class:`CudaApi`) with two implementations underneath:

* ``cuda-python`` (``from cuda.bindings import runtime as cudart``), what NVIDIA's current
  TensorRT samples use. It installs from PyPI everywhere and imports without a driver, so
  it is the default.
* ``pycuda`` (``pycuda.driver``), still common on Jetson images. It needs the driver
  library to build, hence it is only the fallback.

``cuda_api()`` picks one. Nothing is imported at module import time, so ``import
saliq.cuda_memory`` works on a machine without CUDA; every call there raises a
:class:`~saliq.errors.BackendUnavailableError` that names the cause ("no CUDA driver",
``cudaErrorNoDevice``, ...), never a crash.

Device memory owned by someone else (a CuPy array, a PyTorch CUDA tensor, the output of
``saliq._preproc.preprocess_cuda``) is accepted wherever a device buffer is, through DLPack or
the ``__cuda_array_interface__`` protocol, so preprocessed frames reach the engine without a
host round trip.

Ordering after the producer (the rule, in this order):

1. An object that exports DLPack on a CUDA device (PyTorch, CuPy, JAX) is read through
   ``__dlpack__(stream=consumer)``: the exporter makes the consumer's stream wait for the
   writes it queued on its *current* stream. PyTorch's ``__cuda_array_interface__`` (version 2)
   names no stream, so without DLPack nothing would order its writes before ours.
2. Otherwise, or when the exporter refuses (another device, requires grad, managed memory),
   ``__cuda_array_interface__`` is read, and its ``stream`` entry decides the wait queued on
   the consumer's stream before the first copy: an int waits on that stream (version 3);
   an explicit ``None`` waits on nothing (the producer says the data is ready, as version 3
   allows); **no ``stream`` key at all** (version 2, PyTorch) waits on the legacy default
   stream (handle 1, ``cudaStreamLegacy``), because such producers write on their current
   stream, by default the legacy one, and saliq's own streams are non-blocking.
3. Writes queued on any other stream (a torch side stream no longer current, a CuPy
   non-blocking stream) are the caller's to name: ``TensorRTBackend.infer_device(...,
   stream=producer)`` waits on it first (:func:`stream_handle` reads the stream object).
"""

from __future__ import annotations

import atexit
import ctypes
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .dlpack import DL_CUDA, LEGACY_DEFAULT_STREAM, adapt, dlpack_device, is_dlpack
from .errors import BackendUnavailableError, SaliqError

INSTALL_HINT = 'pip install "cuda-python>=12"'
# cuda-python's major version must not exceed the driver's CUDA major (JetPack 6 = CUDA 12).
DRIVER_HINT = 'the cuda-python major must match the driver: JetPack 6 needs "cuda-python>=12,<13"'
IMPLEMENTATIONS = ("cuda-python", "pycuda")

# CUDA runtime error names meaning "this machine cannot run CUDA at all" rather than "this call
# went wrong"; they become BackendUnavailableError so callers can fall back to another backend.
_UNAVAILABLE_ERRORS = frozenset(
    {
        "cudaErrorInsufficientDriver",
        "cudaErrorNoDevice",
        "cudaErrorInitializationError",
        "cudaErrorStubLibrary",
        "cudaErrorDevicesUnavailable",
        "cudaErrorSystemDriverMismatch",
        "cudaErrorCompatNotSupportedOnDevice",
        "CUDA_ERROR_NO_DEVICE",
        "CUDA_ERROR_NOT_INITIALIZED",
        "CUDA_ERROR_STUB_LIBRARY",
        "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
        "CUDA_ERROR_INSUFFICIENT_DRIVER",
    }
)


class CudaError(SaliqError, RuntimeError):
    """A CUDA call failed on a machine that does have a usable GPU."""


def _raise_cuda(what: str, name: str, detail: str) -> None:
    if name in _UNAVAILABLE_ERRORS:
        raise BackendUnavailableError(
            f"CUDA is not usable here ({what}: {name}: {detail}); needs an NVIDIA GPU with its "
            f"driver installed ({DRIVER_HINT})"
        )
    raise CudaError(f"CUDA {what} failed: {name}: {detail}")


# --------------------------------------------------------------------------------------------
# Device memory that someone else owns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceArrayView:
    """A C-contiguous device array described by ``__cuda_array_interface__`` (v2 or v3)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    stream: int | None  # v3: the producer's stream our work must wait for; None: no sync needed
    owner: Any = field(default=None, compare=False, repr=False)  # keeps a DLPack capsule alive

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def device_array_view(obj: Any, stream: int | None = None) -> DeviceArrayView:
    """Describe a CuPy array / PyTorch CUDA tensor / DLPack CUDA tensor without copying it.

    ``stream``: the int handle of the stream that will read the array (None: the legacy default
    stream). A CUDA DLPack exporter is preferred and asked to order its pending writes before
    that stream; otherwise ``.stream`` of the result names the producer stream the caller must
    wait on (the rule is in the module docstring).
    """
    owner = None
    cai = None
    if is_dlpack(obj) and (_dlpack_on_cuda(obj) or not _offers_cai(obj)):
        try:
            owner = adapt(obj, stream)
        except TypeError:
            if not _offers_cai(obj):
                raise
            owner = None  # the exporter refused (e.g. another device): use the interface
        if isinstance(owner, np.ndarray):
            raise TypeError(
                f"{type(obj).__name__} is in host memory; pass a GPU array or use infer() "
                "for host inputs"
            )
        if owner is not None:
            cai = owner.__cuda_array_interface__
    if cai is None:
        cai = _read_cai(obj)
    if not isinstance(cai, dict):
        raise TypeError(
            f"{type(obj).__name__} is not a device array (no __cuda_array_interface__ or "
            "DLPack); pass a CuPy array, a PyTorch CUDA tensor or a saliq DeviceBuffer"
        )
    shape = tuple(int(d) for d in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    ptr, _readonly = cai["data"]
    if cai.get("mask") is not None:
        raise ValueError("masked device arrays are not supported; pass a plain array")
    strides = cai.get("strides")
    if not is_c_contiguous(shape, strides, dtype.itemsize):
        raise ValueError(
            f"device array of shape {shape} is not C-contiguous (strides {tuple(strides)}); "
            "make it contiguous first (tensor.contiguous() / cupy.ascontiguousarray)"
        )
    # No key: a version-2 producer (PyTorch) writing on its current stream, by default the
    # legacy one; an explicit None: the producer says no wait is needed.
    producer_stream = cai.get("stream", LEGACY_DEFAULT_STREAM)
    if producer_stream == 0:
        # The protocol forbids 0 (ambiguous between legacy and per-thread default streams).
        raise ValueError("__cuda_array_interface__ stream 0 is invalid per the protocol")
    return DeviceArrayView(
        int(ptr or 0),
        shape,
        dtype,
        None if producer_stream is None else int(producer_stream),
        owner,
    )


def _dlpack_on_cuda(obj: Any) -> bool:
    try:
        return dlpack_device(obj)[0] == DL_CUDA
    except (TypeError, ValueError, RuntimeError, BufferError):
        return False


def _offers_cai(obj: Any) -> bool:
    try:
        return hasattr(obj, "__cuda_array_interface__")
    except Exception:  # offered but refused (PyTorch raises RuntimeError when grad is needed)
        return True


def _read_cai(obj: Any) -> Any:
    try:
        return getattr(obj, "__cuda_array_interface__", None)
    except (RuntimeError, TypeError, ValueError) as exc:  # e.g. a torch tensor requiring grad
        raise TypeError(
            f"cannot read {type(obj).__name__} through __cuda_array_interface__: {exc}"
        ) from None


def stream_handle(stream: Any) -> int | None:
    """The int ``cudaStream_t`` of ``stream``, for waits on another library's stream.

    Accepts None (returned as is), an int handle, an object with ``__cuda_stream__()`` (the CUDA
    stream protocol), ``.cuda_stream`` (torch.cuda.Stream), ``.ptr`` (cupy.cuda.Stream) or
    ``.handle`` (saliq's Stream, pycuda). 0, the default stream in the runtime API and what
    torch reports for its default stream, becomes 1, the legacy default stream, which is what it
    means unless the producer was built for per-thread default streams (pass 2 for that).
    """
    if stream is None:
        return None
    value: Any = stream
    if not isinstance(stream, int):
        if hasattr(stream, "__cuda_stream__"):
            value = stream.__cuda_stream__()[1]
        else:
            for attr in ("cuda_stream", "ptr", "handle"):
                if hasattr(stream, attr):
                    value = getattr(stream, attr)
                    break
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(
            f"stream must be None, an int cudaStream_t or a torch/CuPy/saliq stream, got {stream!r}"
        )
    return int(value) or LEGACY_DEFAULT_STREAM


def is_c_contiguous(shape: tuple[int, ...], strides: Any, itemsize: int) -> bool:
    """Whether an interface's ``strides`` (None: C-contiguous by the protocol) describe a
    C-contiguous array; dimensions of extent 1 may carry any stride."""
    if strides is None:
        return True
    expected = _c_strides(shape, itemsize)
    return all(s == e or n == 1 for s, e, n in zip(strides, expected, shape))


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))


# --------------------------------------------------------------------------------------------
# The primitives each implementation provides (tokens are the library's own objects)
# --------------------------------------------------------------------------------------------


class _Impl(ABC):
    """Raw CUDA calls. Wrapper classes below give them one Pythonic shape for both libraries."""

    name = "?"

    @abstractmethod
    def device_count(self) -> int: ...
    @abstractmethod
    def driver_version(self) -> int: ...  # CUDA encoding: 1000 * major + 10 * minor
    @abstractmethod
    def compute_capability(self, device: int) -> tuple[int, int]: ...
    @abstractmethod
    def set_device(self, device: int) -> None: ...
    @abstractmethod
    def malloc(self, nbytes: int) -> tuple[int, Any]: ...
    @abstractmethod
    def free(self, token: Any) -> None: ...
    @abstractmethod
    def malloc_host(self, nbytes: int) -> tuple[int, Any]: ...
    @abstractmethod
    def free_host(self, token: Any) -> None: ...
    @abstractmethod
    def stream_create(self) -> tuple[int, Any]: ...
    @abstractmethod
    def stream_destroy(self, token: Any) -> None: ...
    @abstractmethod
    def stream_synchronize(self, token: Any) -> None: ...
    @abstractmethod
    def stream_wait_external(self, token: Any, external_stream: int) -> None: ...
    @abstractmethod
    def event_create(self) -> Any: ...
    @abstractmethod
    def event_destroy(self, token: Any) -> None: ...
    @abstractmethod
    def event_record(self, token: Any, stream: Any) -> None: ...
    @abstractmethod
    def event_synchronize(self, token: Any) -> None: ...
    @abstractmethod
    def event_elapsed_ms(self, start: Any, end: Any) -> float: ...
    @abstractmethod
    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: str, stream: Any) -> None: ...
    @abstractmethod
    def memset_async(self, ptr: int, value: int, nbytes: int, stream: Any) -> None: ...

    # CUDA graphs: only the cuda-python implementation offers them (pycuda's graph API is
    # version-dependent); the TensorRT backend refuses cuda_graph=True otherwise.
    supports_graphs = False

    def begin_capture(self, stream: Any) -> None:
        raise BackendUnavailableError(f"CUDA graphs need cuda-python ({INSTALL_HINT})")

    def end_capture(self, stream: Any) -> tuple[Any, Any]:
        raise BackendUnavailableError(f"CUDA graphs need cuda-python ({INSTALL_HINT})")

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        raise BackendUnavailableError(f"CUDA graphs need cuda-python ({INSTALL_HINT})")

    def graph_destroy(self, graph: Any, graph_exec: Any) -> None:
        return None


class _CudaPython(_Impl):
    """cuda-python runtime bindings: every call returns ``(err, *values)``."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self) -> None:
        from cuda.bindings import runtime as cudart

        self.rt = cudart
        self._kinds = {
            "htod": cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
            "dtoh": cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            "dtod": cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
        }

    def _call(self, what: str, result: Any) -> Any:
        """Unpack ``(err, value...)``; raise naming the CUDA error otherwise."""
        err, values = result[0], result[1:]
        if err != self.rt.cudaError_t.cudaSuccess:
            _, name = self.rt.cudaGetErrorName(err)
            _, text = self.rt.cudaGetErrorString(err)
            name, text = _text(name), _text(text)
            if name == "cudaErrorInsufficientDriver" and self._no_driver():
                # The runtime reports a *missing* driver as an insufficient one; say which.
                text = "no CUDA driver (the NVIDIA driver library libcuda was not found)"
            _raise_cuda(what, name, text)
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def _no_driver(self) -> bool:
        err, version = self.rt.cudaDriverGetVersion()
        return err == self.rt.cudaError_t.cudaSuccess and version == 0

    def device_count(self) -> int:
        return int(self._call("cudaGetDeviceCount", self.rt.cudaGetDeviceCount()))

    def driver_version(self) -> int:
        return int(self._call("cudaDriverGetVersion", self.rt.cudaDriverGetVersion()))

    def compute_capability(self, device: int) -> tuple[int, int]:
        attr = self.rt.cudaDeviceAttr
        major = self._call(
            "cudaDeviceGetAttribute",
            self.rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, device),
        )
        minor = self._call(
            "cudaDeviceGetAttribute",
            self.rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, device),
        )
        return int(major), int(minor)

    def set_device(self, device: int) -> None:
        self._call("cudaSetDevice", self.rt.cudaSetDevice(device))

    def malloc(self, nbytes: int) -> tuple[int, Any]:
        ptr = int(self._call("cudaMalloc", self.rt.cudaMalloc(nbytes)))
        return ptr, ptr

    def free(self, token: Any) -> None:
        self._call("cudaFree", self.rt.cudaFree(token))

    def malloc_host(self, nbytes: int) -> tuple[int, Any]:
        ptr = int(self._call("cudaMallocHost", self.rt.cudaMallocHost(nbytes)))
        return ptr, ptr

    def free_host(self, token: Any) -> None:
        self._call("cudaFreeHost", self.rt.cudaFreeHost(token))

    def stream_create(self) -> tuple[int, Any]:
        # Non-blocking: our stream must not serialise against the legacy default stream
        # that other libraries in the same process (OpenCV, torch) may be using.
        stream = self._call(
            "cudaStreamCreateWithFlags",
            self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking),
        )
        return int(stream), stream

    def stream_destroy(self, token: Any) -> None:
        self._call("cudaStreamDestroy", self.rt.cudaStreamDestroy(token))

    def stream_synchronize(self, token: Any) -> None:
        self._call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(token))

    def stream_wait_external(self, token: Any, external_stream: int) -> None:
        # Order our stream after work already queued on the producer's stream, on the device,
        # without blocking the host (the __cuda_array_interface__ v3 contract).
        event = self.event_create()
        try:
            self._call("cudaEventRecord", self.rt.cudaEventRecord(event, external_stream))
            self._call("cudaStreamWaitEvent", self.rt.cudaStreamWaitEvent(token, event, 0))
        finally:
            self.event_destroy(event)

    def event_create(self) -> Any:
        return self._call("cudaEventCreate", self.rt.cudaEventCreate())

    def event_destroy(self, token: Any) -> None:
        self._call("cudaEventDestroy", self.rt.cudaEventDestroy(token))

    def event_record(self, token: Any, stream: Any) -> None:
        self._call("cudaEventRecord", self.rt.cudaEventRecord(token, stream or 0))

    def event_synchronize(self, token: Any) -> None:
        self._call("cudaEventSynchronize", self.rt.cudaEventSynchronize(token))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cudaEventElapsedTime", self.rt.cudaEventElapsedTime(start, end)))

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: str, stream: Any) -> None:
        self._call(
            "cudaMemcpyAsync",
            self.rt.cudaMemcpyAsync(dst, src, nbytes, self._kinds[kind], stream or 0),
        )

    def memset_async(self, ptr: int, value: int, nbytes: int, stream: Any) -> None:
        self._call("cudaMemsetAsync", self.rt.cudaMemsetAsync(ptr, value, nbytes, stream or 0))

    def begin_capture(self, stream: Any) -> None:
        # Thread-local mode: CUDA calls made meanwhile by *other* threads (their own
        # inference) must neither be captured nor invalidate this capture.
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call("cudaStreamBeginCapture", self.rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: Any) -> tuple[Any, Any]:
        graph = self._call("cudaStreamEndCapture", self.rt.cudaStreamEndCapture(stream))
        try:
            graph_exec = self._call("cudaGraphInstantiate", self.rt.cudaGraphInstantiate(graph, 0))
        except BaseException:
            self.rt.cudaGraphDestroy(graph)
            raise
        return graph, graph_exec

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self._call("cudaGraphLaunch", self.rt.cudaGraphLaunch(graph_exec, stream))

    def graph_destroy(self, graph: Any, graph_exec: Any) -> None:
        self._call("cudaGraphExecDestroy", self.rt.cudaGraphExecDestroy(graph_exec))
        self._call("cudaGraphDestroy", self.rt.cudaGraphDestroy(graph))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _PyCuda(_Impl):
    """pycuda's driver API. It needs a current context per thread, unlike the runtime API."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as drv

        self.drv = drv
        self._device = 0
        self._local = threading.local()
        self._contexts: dict[int, Any] = {}
        self._lock = threading.Lock()
        try:
            drv.init()
        except drv.Error as exc:
            _raise_cuda("cuInit", _pycuda_name(exc), str(exc))
        # pycuda complains at exit when a context is still pushed; pop the main thread's.
        atexit.register(self._pop_current)

    def _pop_current(self) -> None:
        if getattr(self._local, "device", None) is not None:
            self._local.device = None
            try:
                self.drv.Context.pop()
            except self.drv.Error:
                pass

    def _guard(self, what: str) -> _PyCudaGuard:
        return _PyCudaGuard(self, what)

    def _ensure_context(self) -> None:
        # TensorRT and the preprocessing kernel use the runtime API, which works in the
        # device's *primary* context; pycuda must use that same context, made current on
        # every thread that calls in (driver-API contexts are per thread).
        if getattr(self._local, "device", None) == self._device:
            return
        with self._lock:
            ctx = self._contexts.get(self._device)
            if ctx is None:
                ctx = self.drv.Device(self._device).retain_primary_context()
                self._contexts[self._device] = ctx
        if getattr(self._local, "device", None) is not None:
            self.drv.Context.pop()
        ctx.push()
        self._local.device = self._device

    def device_count(self) -> int:
        with self._guard("cuDeviceGetCount"):
            return int(self.drv.Device.count())

    def driver_version(self) -> int:
        with self._guard("cuDriverGetVersion"):
            return int(self.drv.get_driver_version())

    def compute_capability(self, device: int) -> tuple[int, int]:
        with self._guard("cuDeviceComputeCapability"):
            major, minor = self.drv.Device(device).compute_capability()
        return int(major), int(minor)

    def set_device(self, device: int) -> None:
        self._device = device
        with self._guard("cuDevicePrimaryCtxRetain"):
            self._ensure_context()

    def malloc(self, nbytes: int) -> tuple[int, Any]:
        with self._guard("cuMemAlloc"):
            self._ensure_context()
            alloc = self.drv.mem_alloc(nbytes)
        return int(alloc), alloc

    def free(self, token: Any) -> None:
        with self._guard("cuMemFree"):
            token.free()

    def malloc_host(self, nbytes: int) -> tuple[int, Any]:
        with self._guard("cuMemHostAlloc"):
            self._ensure_context()
            array = self.drv.pagelocked_empty(nbytes, np.uint8)
        return int(array.ctypes.data), array

    def free_host(self, token: Any) -> None:
        with self._guard("cuMemFreeHost"):
            token.base.free()

    def stream_create(self) -> tuple[int, Any]:
        with self._guard("cuStreamCreate"):
            self._ensure_context()
            stream = self.drv.Stream()
        return int(stream.handle), stream

    def stream_destroy(self, token: Any) -> None:
        return None  # pycuda destroys the stream when its object is collected

    def stream_synchronize(self, token: Any) -> None:
        with self._guard("cuStreamSynchronize"):
            token.synchronize()

    def stream_wait_external(self, token: Any, external_stream: int) -> None:
        # pycuda cannot wrap a foreign stream handle, so wait for the whole context instead:
        # correct, just coarser than an event wait.
        with self._guard("cuCtxSynchronize"):
            self._ensure_context()
            self.drv.Context.synchronize()

    def event_create(self) -> Any:
        with self._guard("cuEventCreate"):
            self._ensure_context()
            return self.drv.Event()

    def event_destroy(self, token: Any) -> None:
        return None  # collected with its object

    def event_record(self, token: Any, stream: Any) -> None:
        with self._guard("cuEventRecord"):
            token.record(stream)

    def event_synchronize(self, token: Any) -> None:
        with self._guard("cuEventSynchronize"):
            token.synchronize()

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        with self._guard("cuEventElapsedTime"):
            return float(end.time_since(start))

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: str, stream: Any) -> None:
        with self._guard("cuMemcpyAsync"):
            self._ensure_context()
            if kind == "htod":
                self.drv.memcpy_htod_async(dst, _host_bytes(src, nbytes), stream)
            elif kind == "dtoh":
                self.drv.memcpy_dtoh_async(_host_bytes(dst, nbytes), src, stream)
            else:
                self.drv.memcpy_dtod_async(dst, src, nbytes, stream)

    def memset_async(self, ptr: int, value: int, nbytes: int, stream: Any) -> None:
        with self._guard("cuMemsetD8Async"):
            self._ensure_context()
            self.drv.memset_d8_async(ptr, value, nbytes, stream)


def _host_bytes(ptr: int, nbytes: int) -> Any:
    # pycuda copies from/to Python buffers, not raw addresses: wrap the address (pinned
    # memory stays pinned; the wrapper owns nothing).
    return (ctypes.c_char * nbytes).from_address(ptr)


def _pycuda_name(exc: Exception) -> str:
    # pycuda messages look like "cuInit failed: no CUDA-capable device is detected"; the
    # driver's status name is not exposed, so map the common "cannot run here" texts.
    text = str(exc).lower()
    if "no cuda-capable device" in text:
        return "CUDA_ERROR_NO_DEVICE"
    if "insufficient" in text:
        return "CUDA_ERROR_INSUFFICIENT_DRIVER"
    if "not initialized" in text or "initialization" in text:
        return "CUDA_ERROR_NOT_INITIALIZED"
    return type(exc).__name__


class _PyCudaGuard:
    def __init__(self, impl: _PyCuda, what: str) -> None:
        self.impl, self.what = impl, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and isinstance(exc, self.impl.drv.Error):
            _raise_cuda(self.what, _pycuda_name(exc), str(exc))


# --------------------------------------------------------------------------------------------
# The one interface
# --------------------------------------------------------------------------------------------


_OwnedT = TypeVar("_OwnedT", bound="_Owned")


class _Owned:
    """A CUDA object released exactly once: by ``close()`` or by leaving a ``with`` block.

    Idempotent because close paths release everything and may run twice (explicit, then
    again from an owner's cleanup).
    """

    api: CudaApi
    _token: Any = None

    def _release(self, token: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._token is not None:
            token, self._token = self._token, None
            self._release(token)

    def __enter__(self: _OwnedT) -> _OwnedT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeviceBuffer(_Owned):
    """``nbytes`` of device memory. ``.ptr`` is the address; free with ``free()`` or ``with``."""

    def __init__(self, nbytes: int, api: CudaApi | None = None) -> None:
        if int(nbytes) <= 0:
            raise ValueError(f"DeviceBuffer needs a positive size, got {nbytes}")
        self.api = api or cuda_api()
        self.nbytes = int(nbytes)
        self.ptr, self._token = self.api.impl.malloc(self.nbytes)

    def _release(self, token: Any) -> None:
        self.ptr = 0
        self.api.impl.free(token)

    free = _Owned.close

    @property
    def freed(self) -> bool:
        return self._token is None

    def __repr__(self) -> str:
        return f"DeviceBuffer(nbytes={self.nbytes}, ptr={self.ptr:#x}, api={self.api.name})"


class PinnedBuffer(_Owned):
    """Page-locked host memory seen as a numpy array (``.array``) of ``shape`` and ``dtype``.

    Pinned memory makes host<->device copies truly asynchronous and faster. ``.array`` is a
    view: it must not be used after ``free()``.
    """

    def __init__(self, shape: tuple[int, ...] | int, dtype: Any, api: CudaApi | None = None):
        self.api = api or cuda_api()
        shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        if self.nbytes <= 0:
            raise ValueError(f"PinnedBuffer needs a non-empty shape, got {shape}")
        self.ptr, self._token = self.api.impl.malloc_host(self.nbytes)
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.ptr)
        self.array: np.ndarray = np.frombuffer(raw, dtype=self.dtype).reshape(shape)

    def _release(self, token: Any) -> None:
        self.ptr = 0
        self.array = np.empty((0,), self.dtype)  # drop our view of the freed memory
        self.api.impl.free_host(token)

    free = _Owned.close


class Stream(_Owned):
    """A non-blocking CUDA stream; ``.handle`` is the int ``execute_async_v3`` takes."""

    def __init__(self, api: CudaApi | None = None) -> None:
        self.api = api or cuda_api()
        self.handle, self._token = self.api.impl.stream_create()

    @property
    def token(self) -> Any:
        """The library's own stream object (cudaStream_t / pycuda.driver.Stream)."""
        return self._token

    def synchronize(self) -> None:
        self.api.impl.stream_synchronize(self._token)

    def wait_external(self, external_stream: int | None) -> None:
        """Make later work on this stream wait for work queued on another library's stream."""
        if external_stream is not None:
            self.api.impl.stream_wait_external(self._token, external_stream)

    def _release(self, token: Any) -> None:
        self.handle = 0
        self.api.impl.stream_destroy(token)


class Event(_Owned):
    """A CUDA event: ``record(stream)``, ``synchronize()``; time with ``elapsed_ms(a, b)``."""

    def __init__(self, api: CudaApi | None = None) -> None:
        self.api = api or cuda_api()
        self._token = self.api.impl.event_create()

    def record(self, stream: Stream | None = None) -> Event:
        self.api.impl.event_record(self._token, None if stream is None else stream.token)
        return self

    def synchronize(self) -> None:
        self.api.impl.event_synchronize(self._token)

    def _release(self, token: Any) -> None:
        self.api.impl.event_destroy(token)


def elapsed_ms(start: Event, end: Event) -> float:
    """Milliseconds of device time between two recorded events (``end`` must be complete)."""
    return start.api.impl.event_elapsed_ms(start._token, end._token)


DeviceLike = Any  # DeviceBuffer | int (raw address) | a __cuda_array_interface__ or DLPack array


def _device_target(obj: DeviceLike, stream: Stream | None) -> tuple[int, int | None]:
    """(address, capacity in bytes or None when unknown) of a device destination/source."""
    if isinstance(obj, DeviceBuffer):
        if obj.freed:
            raise ValueError("DeviceBuffer was already freed")
        return obj.ptr, obj.nbytes
    if isinstance(obj, int):
        return obj, None
    view = device_array_view(obj, None if stream is None else stream.handle)
    if stream is not None:
        stream.wait_external(view.stream)
    return view.ptr, view.nbytes


# Aliases for annotations inside CudaApi, whose factory methods shadow these class names.
_DeviceBufferT = DeviceBuffer
_PinnedBufferT = PinnedBuffer
_StreamT = Stream
_EventT = Event


class CudaApi:
    """The memory layer on one implementation; the classes above bound to it."""

    def __init__(self, impl: _Impl) -> None:
        self.impl = impl
        self.name = impl.name

    @property
    def supports_graphs(self) -> bool:
        return self.impl.supports_graphs

    # Factories, so that code written against ``api`` never names the implementation.
    def DeviceBuffer(self, nbytes: int) -> _DeviceBufferT:  # noqa: N802
        return DeviceBuffer(nbytes, api=self)

    def PinnedBuffer(self, shape: tuple[int, ...] | int, dtype: Any) -> _PinnedBufferT:  # noqa: N802
        return PinnedBuffer(shape, dtype, api=self)

    def Stream(self) -> _StreamT:  # noqa: N802
        return Stream(api=self)

    def Event(self) -> _EventT:  # noqa: N802
        return Event(api=self)

    elapsed_ms = staticmethod(elapsed_ms)

    def device_count(self) -> int:
        return self.impl.device_count()

    def compute_capability(self, device: int = 0) -> str:
        """``"8.7"`` style, as TensorRT engine sidecars record it."""
        count = self.device_count()
        if not 0 <= device < count:
            raise BackendUnavailableError(
                f"CUDA device {device} does not exist ({count} device(s) visible; check "
                "CUDA_VISIBLE_DEVICES)"
            )
        major, minor = self.impl.compute_capability(device)
        return f"{major}.{minor}"

    def driver_version(self) -> str:
        """The CUDA version the installed driver supports, e.g. ``"12.6"``."""
        raw = self.impl.driver_version()
        if raw <= 0:
            raise BackendUnavailableError(
                "no CUDA driver installed (the NVIDIA driver library libcuda was not found)"
            )
        return f"{raw // 1000}.{raw % 1000 // 10}"

    def set_device(self, device: int) -> None:
        """Make ``device`` current for the calling thread (CUDA's current device is per thread)."""
        self.impl.set_device(device)

    def copy_htod_async(
        self, dst: DeviceLike, src: np.ndarray, stream: _StreamT | None = None
    ) -> None:
        """Queue a copy of the host array ``src`` (ideally pinned) into device memory ``dst``."""
        src = _contiguous_host(src, "source")
        ptr, capacity = _device_target(dst, stream)
        _check_fits(src.nbytes, capacity, "host->device")
        self.impl.memcpy_async(ptr, src.ctypes.data, src.nbytes, "htod", _token(stream))

    def copy_dtoh_async(
        self, dst: np.ndarray, src: DeviceLike, stream: _StreamT | None = None
    ) -> None:
        """Queue a copy of ``dst.nbytes`` bytes of device memory ``src`` into host array ``dst``.

        The host array is filled only once the stream is synchronised.
        """
        dst = _contiguous_host(dst, "destination")
        if not dst.flags.writeable:
            raise ValueError("device->host destination array is read-only")
        ptr, capacity = _device_target(src, stream)
        _check_fits(dst.nbytes, capacity, "device->host")
        self.impl.memcpy_async(dst.ctypes.data, ptr, dst.nbytes, "dtoh", _token(stream))

    def copy_dtod_async(
        self, dst: DeviceLike, src: DeviceLike, nbytes: int, stream: _StreamT | None = None
    ) -> None:
        dst_ptr, dst_cap = _device_target(dst, stream)
        src_ptr, src_cap = _device_target(src, stream)
        _check_fits(nbytes, dst_cap, "device->device destination")
        _check_fits(nbytes, src_cap, "device->device source")
        self.impl.memcpy_async(dst_ptr, src_ptr, nbytes, "dtod", _token(stream))

    def memset_async(
        self, dst: DeviceLike, value: int, nbytes: int | None = None, stream: _StreamT | None = None
    ) -> None:
        """Set ``nbytes`` (default: the whole buffer) bytes of device memory to ``value``."""
        ptr, capacity = _device_target(dst, stream)
        if nbytes is None:
            if capacity is None:
                raise ValueError("memset of a raw address needs nbytes")
            nbytes = capacity
        _check_fits(nbytes, capacity, "memset")
        self.impl.memset_async(ptr, int(value) & 0xFF, nbytes, _token(stream))

    @contextmanager
    def capture(self, stream: _StreamT) -> Iterator[list[CudaGraph]]:
        """Capture the work queued on ``stream`` into a CUDA graph (yielded list gets it)."""
        holder: list[CudaGraph] = []
        self.impl.begin_capture(stream.token)
        try:
            yield holder
        except BaseException:
            # End the capture even on error so the stream is usable again; drop the graph.
            try:
                graph, graph_exec = self.impl.end_capture(stream.token)
                self.impl.graph_destroy(graph, graph_exec)
            except SaliqError:
                pass
            raise
        graph, graph_exec = self.impl.end_capture(stream.token)
        holder.append(CudaGraph(self, graph, graph_exec))


class CudaGraph:
    """An instantiated CUDA graph: ``launch(stream)`` replays the captured work."""

    def __init__(self, api: CudaApi, graph: Any, graph_exec: Any) -> None:
        self.api, self._graph, self._exec = api, graph, graph_exec

    def launch(self, stream: Stream) -> None:
        self.api.impl.graph_launch(self._exec, stream.token)

    def close(self) -> None:
        if self._exec is not None:
            graph, graph_exec, self._graph, self._exec = self._graph, self._exec, None, None
            self.api.impl.graph_destroy(graph, graph_exec)


def _token(stream: Stream | None) -> Any:
    return None if stream is None else stream.token


def _contiguous_host(array: np.ndarray, role: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{role} must be a numpy array, got {type(array).__name__}")
    if not array.flags.c_contiguous:
        # A silent np.ascontiguousarray copy would break async semantics (the temporary may
        # be freed before the copy runs), so refuse instead.
        raise ValueError(f"host {role} array must be C-contiguous (use np.ascontiguousarray)")
    return array


def _check_fits(nbytes: int, capacity: int | None, what: str) -> None:
    if capacity is not None and nbytes > capacity:
        raise ValueError(f"{what} copy of {nbytes} bytes exceeds the {capacity}-byte buffer")


# --------------------------------------------------------------------------------------------
# Choosing an implementation
# --------------------------------------------------------------------------------------------

_APIS: dict[str, CudaApi] = {}
_APIS_LOCK = threading.Lock()


def available_implementations() -> dict[str, str]:
    """Each implementation -> "ok" or why it cannot be imported (for ``saliq doctor``)."""
    found = {}
    for name in IMPLEMENTATIONS:
        try:
            _import_impl(name)
            found[name] = "ok"
        except ImportError as exc:
            found[name] = f"not importable ({exc})"
    return found


def _import_impl(name: str) -> None:
    if name == "cuda-python":
        from cuda.bindings import runtime  # noqa: F401
    else:
        import pycuda.driver  # noqa: F401


def cuda_api(prefer: str | None = None) -> CudaApi:
    """The memory layer: cuda-python if importable, else pycuda (or ``prefer`` exactly)."""
    if prefer is not None and prefer not in IMPLEMENTATIONS:
        raise ValueError(f"unknown CUDA implementation {prefer!r}; choose {IMPLEMENTATIONS}")
    order = (prefer,) if prefer else IMPLEMENTATIONS
    reasons = []
    with _APIS_LOCK:
        for name in order:
            if name in _APIS:
                return _APIS[name]
            try:
                impl: _Impl = _CudaPython() if name == "cuda-python" else _PyCuda()
            except ImportError as exc:
                reasons.append(f"{name}: {exc}")
                continue
            _APIS[name] = CudaApi(impl)
            return _APIS[name]
    raise BackendUnavailableError(
        f"no CUDA Python bindings importable ({'; '.join(reasons)}): {INSTALL_HINT}"
    )


def device_count() -> int:
    return cuda_api().device_count()


def compute_capability(device: int = 0) -> str:
    return cuda_api().compute_capability(device)


def driver_version() -> str:
    return cuda_api().driver_version()


__all__ = [
    "INSTALL_HINT",
    "LEGACY_DEFAULT_STREAM",
    "CudaApi",
    "CudaError",
    "CudaGraph",
    "DeviceArrayView",
    "DeviceBuffer",
    "Event",
    "PinnedBuffer",
    "Stream",
    "available_implementations",
    "compute_capability",
    "cuda_api",
    "device_array_view",
    "device_count",
    "driver_version",
    "elapsed_ms",
    "stream_handle",
]
