"""TensorRT backend: runs a saliq engine (raw plan + ``<engine>.json`` sidecar) on the GPU.

TensorRT 10's name-based I/O API only; every call below exists in TensorRT 10.3 (JetPack 6):

=============================================  =============================================
API                                            introduced
=============================================  =============================================
``trt.Logger``, ``trt.Runtime``,               TensorRT 5 (Python API)
``Runtime.deserialize_cuda_engine``,
``ICudaEngine.create_execution_context``,
``trt.nptype``, ``trt.__version__``
``ICudaEngine.num_io_tensors``,                8.5 (name-based I/O; binding API removed in 10)
``get_tensor_name/mode/dtype/shape``,
``get_tensor_location``,
``get_tensor_profile_shape``,
``trt.TensorIOMode``, ``trt.TensorLocation``
``IExecutionContext.set_input_shape``,         8.5
``set_tensor_address``, ``get_tensor_shape``,
``execute_async_v3``
=============================================  =============================================

``import tensorrt`` happens only inside functions, so importing saliq never needs it.

Threading: one TensorRT engine, and per calling thread its own CUDA stream, execution
context and pinned/device buffers (an execution context must never be used by two threads
at once, and sharing buffers would let threads overwrite each other's batches). Buffers are
sized once for the optimisation profile's largest batch, so steady-state inference allocates
nothing; bigger batches are run in chunks, smaller than the profile's minimum are padded.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import numpy as np

from ..engine_sidecar import check_compatible, check_host_code_allowed, read_sidecar
from ..errors import BackendUnavailableError, InvalidImageError, ModelFormatError
from .base import Backend

if TYPE_CHECKING:  # typing only: the runtime import stays lazy
    import tensorrt as trt

    from ..cuda_memory import CudaApi, CudaGraph, DeviceBuffer, PinnedBuffer, Stream

TENSORRT_HINT = (
    "TensorRT's Python package is not importable: on Jetson it ships with JetPack (use the "
    "system python3 or a venv with --system-site-packages); on x86: "
    'pip install "tensorrt-cu12<11" (or TensorRT 11)'
)
SUPPORTED_IO_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def _require_tensorrt() -> None:
    """Raise the one-line install hint when TensorRT is missing (callers then import it)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(f"{TENSORRT_HINT} ({exc})") from None


def tensorrt_version() -> str:
    _require_tensorrt()
    import tensorrt as trt

    return str(trt.__version__)


# --------------------------------------------------------------------------------------------
# Pure logic (no TensorRT, no GPU): I/O descriptions, profiles, buffer plans
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IOSpec:
    """One engine I/O tensor as TensorRT describes it (``-1`` marks a dynamic axis)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    # Inputs: the profile's (min, opt, max) shapes; outputs: None.
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None


class BufferPlan(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def profile_batch_range(io_specs: Sequence[IOSpec]) -> tuple[int, int]:
    """(min, max) batch every input's optimisation profile admits."""
    inputs = [s for s in io_specs if s.is_input]
    if not inputs:
        raise ModelFormatError("the engine has no inputs; rebuild it with `saliq export trt`")
    lows, highs = [], []
    for spec in inputs:
        if spec.profile is None:
            lows.append(spec.shape[0])
            highs.append(spec.shape[0])
        else:
            lows.append(spec.profile[0][0])
            highs.append(spec.profile[2][0])
    low, high = max(lows), min(highs)
    if not 1 <= low <= high:
        raise ModelFormatError(
            f"the engine's inputs admit no common batch size (min {lows}, max {highs}); "
            "rebuild it with `saliq export trt`"
        )
    return low, high


def plan_buffers(io_specs: Sequence[IOSpec], max_batch: int) -> dict[str, BufferPlan]:
    """Shape, dtype and byte size of every I/O buffer, for batches up to ``max_batch``.

    Only the leading (batch) axis may be dynamic: that is how saliq builds engines, and it
    lets buffers be allocated once instead of per call.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    plans = {}
    for spec in io_specs:
        if not spec.shape:
            raise ModelFormatError(f"engine tensor {spec.name!r} is a scalar; expected [N, ...]")
        batch, rest = spec.shape[0], spec.shape[1:]
        if any(d < 0 for d in rest):
            raise ModelFormatError(
                f"engine tensor {spec.name!r} has dynamic non-batch axes {spec.shape}; saliq "
                "engines have only a dynamic batch axis: rebuild with `saliq export trt`"
            )
        if batch >= 0 and batch < max_batch:
            raise ModelFormatError(
                f"engine tensor {spec.name!r} has a fixed batch {batch} < {max_batch}; "
                "rebuild with `saliq export trt`"
            )
        shape = (max_batch, *rest)
        count = int(np.prod(shape, dtype=np.int64))
        plans[spec.name] = BufferPlan(shape, spec.dtype, count * spec.dtype.itemsize)
    return plans


def check_io_against_spec(
    io_specs: Sequence[IOSpec],
    inputs: Sequence[str],
    outputs: Sequence[str],
    expected_input_shapes: Mapping[str, tuple[int, ...]],
    source: str = "engine",
) -> None:
    """Refuse an engine whose tensors do not match the ModelSpec its sidecar carries."""
    rebuild = "rebuild it with `saliq export trt`"
    engine_inputs = {s.name: s for s in io_specs if s.is_input}
    engine_outputs = {s.name: s for s in io_specs if not s.is_input}
    if set(engine_inputs) != set(inputs):
        raise ModelFormatError(
            f"{source}: engine inputs {sorted(engine_inputs)} differ from the spec's "
            f"{sorted(inputs)}; {rebuild}"
        )
    missing = set(outputs) - set(engine_outputs)
    if missing:
        raise ModelFormatError(f"{source}: engine lacks outputs {sorted(missing)}; {rebuild}")
    for spec in io_specs:
        if spec.dtype not in SUPPORTED_IO_DTYPES:
            raise ModelFormatError(
                f"{source}: tensor {spec.name!r} is {spec.dtype}; saliq engines use float32 or "
                f"float16 I/O; {rebuild}"
            )
        if spec.is_input and tuple(spec.shape[1:]) != tuple(expected_input_shapes[spec.name]):
            raise ModelFormatError(
                f"{source}: input {spec.name!r} has shape {spec.shape}, the spec expects "
                f"[N, {', '.join(map(str, expected_input_shapes[spec.name]))}]; {rebuild}"
            )


def batch_chunks(total: int, min_batch: int, max_batch: int) -> list[tuple[int, int, int]]:
    """Split ``total`` items into (start, count, padded count) runs the profile admits.

    Above the profile's maximum, batches run in chunks; below its minimum, the chunk is
    padded (with copies of its last item) because TensorRT refuses such shapes.
    """
    if total < 1:
        raise ValueError("empty batch")
    chunks = []
    for start in range(0, total, max_batch):
        count = min(max_batch, total - start)
        chunks.append((start, count, max(count, min_batch)))
    return chunks


T = TypeVar("T")


class PerThread(Generic[T]):
    """One lazily created ``T`` per calling thread, all released together by ``close_all``."""

    def __init__(self, factory: Callable[[], T], closer: Callable[[T], None]) -> None:
        self._factory, self._closer = factory, closer
        self._local = threading.local()
        self._all: list[T] = []
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> T:
        item = getattr(self._local, "item", None)
        if item is None:
            if self._closed:
                raise RuntimeError("the backend was closed")
            item = self._factory()
            with self._lock:
                self._all.append(item)
            self._local.item = item
        return item

    def __len__(self) -> int:
        return len(self._all)

    def close_all(self) -> None:
        with self._lock:
            items, self._all, self._closed = self._all, [], True
        errors = []
        for item in items:
            try:
                self._closer(item)
            except Exception as exc:  # release the rest; report the first failure after
                errors.append(exc)
        self._local = threading.local()
        if errors:
            raise errors[0]


# --------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------


@dataclass
class _ThreadState:
    stream: Stream
    context: trt.IExecutionContext
    host: dict[str, PinnedBuffer]
    device: dict[str, DeviceBuffer]
    graphs: dict[int, CudaGraph] = field(default_factory=dict)
    warmed: set[int] = field(default_factory=set)  # batch sizes run once without a graph
    graph_failed: set[int] = field(default_factory=set)


_LOGGER: trt.Logger | None = None
_LOGGER_LOCK = threading.Lock()


def _logger() -> trt.Logger:
    # TensorRT wants one logger per process; several Runtimes may share it.
    global _LOGGER
    import tensorrt as trt

    with _LOGGER_LOCK:
        if _LOGGER is None:
            _LOGGER = trt.Logger(trt.Logger.WARNING)
        return _LOGGER


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def read_io_specs(engine: trt.ICudaEngine) -> list[IOSpec]:
    """Describe the engine's I/O tensors (profile 0 for inputs)."""
    import tensorrt as trt

    specs = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        if engine.get_tensor_location(name) != trt.TensorLocation.DEVICE:
            raise ModelFormatError(
                f"engine tensor {name!r} lives in host memory (a shape tensor); saliq engines "
                "have device tensors only: rebuild with `saliq export trt`"
            )
        profile = None
        if is_input:
            low, opt, high = engine.get_tensor_profile_shape(name, 0)
            profile = (_dims(low), _dims(opt), _dims(high))
        specs.append(
            IOSpec(
                name=name,
                is_input=is_input,
                shape=_dims(engine.get_tensor_shape(name)),
                dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                profile=profile,
            )
        )
    return specs


class TensorRTBackend(Backend):
    """A saliq TensorRT engine on CUDA device ``device``.

    ``cuda_graph=True`` replays each batch size's inference as a CUDA graph (captured on
    its second call, after TensorRT's first run has done its lazy allocations), which removes
    most per-launch CPU overhead on small Jetson CPUs. Needs cuda-python.

    ``allow_engine_host_code=True`` lets a version-compatible engine load: such a plan embeds
    TensorRT's lean runtime, host code that TensorRT executes while deserializing, so (like
    unpickling) it is refused unless the caller vouches for the file.
    """

    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | Path,
        device: int = 0,
        cuda_graph: bool = False,
        cuda_impl: str | None = None,
        allow_engine_host_code: bool = False,
    ) -> None:
        from ..cuda_memory import cuda_api

        _require_tensorrt()
        import tensorrt as trt

        engine_path = Path(engine_path)
        sidecar = read_sidecar(engine_path)
        self._api: CudaApi = cuda_api(cuda_impl)
        if cuda_graph and not self._api.supports_graphs:
            raise BackendUnavailableError(
                f"cuda_graph=True needs cuda-python (using {self._api.name}): "
                'pip install "cuda-python>=12"'
            )
        self.device_index = int(device)
        capability = self._api.compute_capability(self.device_index)
        self._api.set_device(self.device_index)
        # Before deserializing: a plan for another TensorRT or GPU can crash or misbehave
        # instead of failing cleanly, so the sidecar decides first.
        check_compatible(sidecar, engine_path, str(trt.__version__), capability)
        rebuild = sidecar.build_command or "saliq export trt <model.onnx>"
        check_host_code_allowed(sidecar, engine_path, allow_engine_host_code)

        runtime = trt.Runtime(_logger())
        # Only version-compatible plans carry host code; TensorRT refuses them without this.
        runtime.engine_host_code_allowed = sidecar.version_compatible
        self._runtime: trt.Runtime | None = runtime  # must outlive the engine
        engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise ModelFormatError(
                f"{engine_path}: TensorRT {trt.__version__} could not deserialize the plan "
                f"(see the TensorRT log above); rebuild it on this device: {rebuild}"
            )
        self._engine: trt.ICudaEngine | None = engine
        super().__init__(sidecar.spec, device=f"cuda:{self.device_index}")
        self.sidecar = sidecar
        self.cuda_graph = cuda_graph

        self.io_specs = read_io_specs(engine)
        check_io_against_spec(
            self.io_specs,
            self.spec.inputs,
            self.spec.outputs,
            {name: self.expected_shape(name) for name in self.spec.inputs},
            source=str(engine_path),
        )
        self.min_batch, self.max_batch = profile_batch_range(self.io_specs)
        self.buffer_plan = plan_buffers(self.io_specs, self.max_batch)
        self._input_dtypes = {s.name: s.dtype for s in self.io_specs if s.is_input}
        self._context_lock = threading.Lock()
        self._threads: PerThread[_ThreadState] = PerThread(self._new_state, self._close_state)

    # -- per-thread state ---------------------------------------------------------------------

    def _new_state(self) -> _ThreadState:
        if self._engine is None:
            raise RuntimeError("the TensorRT backend was closed")
        self._api.set_device(self.device_index)  # the current device is per thread
        with self._context_lock:
            context: trt.IExecutionContext | None = self._engine.create_execution_context()
        if context is None:
            raise BackendUnavailableError(
                "TensorRT could not create an execution context (out of GPU memory?)"
            )
        stream = self._api.Stream()
        host: dict[str, PinnedBuffer] = {}
        device: dict[str, DeviceBuffer] = {}
        try:
            for name, plan in self.buffer_plan.items():
                host[name] = self._api.PinnedBuffer(plan.shape, plan.dtype)
                device[name] = self._api.DeviceBuffer(plan.nbytes)
                # Fixed addresses for the context's lifetime: set once, and CUDA graphs
                # captured against them stay valid.
                if not context.set_tensor_address(name, device[name].ptr):
                    raise ModelFormatError(f"TensorRT refused the address of tensor {name!r}")
        except BaseException:
            self._close_state(_ThreadState(stream, context, host, device))
            raise
        return _ThreadState(stream, context, host, device)

    def _close_state(self, state: _ThreadState) -> None:
        for graph in state.graphs.values():
            graph.close()
        state.graphs.clear()
        for pinned in state.host.values():
            pinned.free()
        for buffer in state.device.values():
            buffer.free()
        state.stream.close()
        del state.context  # the context must go before the engine does

    # -- inference ----------------------------------------------------------------------------

    def _state(self) -> _ThreadState:
        # The current CUDA device is per thread and other libraries (torch, CuPy) may have
        # changed it since the last call; TensorRT must run on the engine's device.
        self._api.set_device(self.device_index)
        return self._threads.get()

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host (numpy) inputs, already validated by ``Backend.infer``."""
        total = next(iter(inputs.values())).shape[0]
        state = self._state()
        results = []
        for start, count, padded in batch_chunks(total, self.min_batch, self.max_batch):
            for name, array in inputs.items():
                view = state.host[name].array[:padded]
                # Casts to the engine's I/O dtype (float16 for a strongly typed FP16 graph).
                np.copyto(view[:count], array[start : start + count], casting="same_kind")
                view[count:] = view[count - 1]  # padding rows, if any
                self._api.copy_htod_async(state.device[name], view, state.stream)
            results.append(self._execute_and_fetch(state, count, padded))
        return _concat(results)

    def infer_device(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run on inputs already in GPU memory (``__cuda_array_interface__`` or DLPack).

        The arrays must be C-contiguous ``[N, ...]`` of the engine's input dtype. They are
        copied device-to-device into this thread's fixed input buffers (no host round trip),
        which keeps tensor addresses fixed for CUDA graphs. Unlike ``infer`` this does not
        scan for NaN/inf (that would need the data on the host).
        """
        from ..cuda_memory import device_array_view

        state = self._state()
        views = {}
        for name in self.spec.inputs:
            if name not in inputs:
                raise InvalidImageError(f"{self.name}: missing model input {name!r}")
            try:
                view = device_array_view(inputs[name], state.stream.handle)
            except (TypeError, ValueError) as exc:
                raise InvalidImageError(f"{self.name}: input {name!r}: {exc}") from None
            if view.dtype != self._input_dtypes[name]:
                raise InvalidImageError(
                    f"{self.name}: input {name!r} is {view.dtype}, the engine takes "
                    f"{self._input_dtypes[name]} (convert it on the device first)"
                )
            views[name] = view
        batch = self.check_shapes({name: tuple(view.shape) for name, view in views.items()})
        if not batch:
            raise InvalidImageError(f"{self.name}: empty batch")
        for view in views.values():
            state.stream.wait_external(view.stream)  # the producer may still be writing
        results = []
        for start, count, padded in batch_chunks(batch, self.min_batch, self.max_batch):
            for name, view in views.items():
                row = view.nbytes // batch
                target = state.device[name]
                self._api.copy_dtod_async(target, view.ptr + start * row, count * row, state.stream)
                last = view.ptr + (start + count - 1) * row
                for pad in range(count, padded):
                    self._api.copy_dtod_async(target.ptr + pad * row, last, row, state.stream)
            results.append(self._execute_and_fetch(state, count, padded))
        return _concat(results)

    def _execute_and_fetch(
        self, state: _ThreadState, count: int, padded: int
    ) -> dict[str, np.ndarray]:
        for name in self.spec.inputs:
            shape = (padded, *self.buffer_plan[name].shape[1:])
            if not state.context.set_input_shape(name, shape):
                raise InvalidImageError(
                    f"{self.name}: TensorRT refused input shape {shape} for {name!r} "
                    f"(profile batch {self.min_batch}..{self.max_batch})"
                )
        self._execute(state, padded)
        fetched = {}
        for name in self.spec.outputs:
            shape = _dims(state.context.get_tensor_shape(name))
            if not shape or shape[0] != padded:
                raise ModelFormatError(
                    f"{self.name}: output {name!r} has shape {shape} for batch {padded}"
                )
            host = state.host[name].array[:padded]
            self._api.copy_dtoh_async(host, state.device[name], state.stream)
            fetched[name] = host
        state.stream.synchronize()
        # Copy out of the pinned buffers: they are reused by this thread's next call.
        return {name: host[:count].astype(np.float32) for name, host in fetched.items()}

    def _execute(self, state: _ThreadState, batch: int) -> None:
        if not self.cuda_graph or batch in state.graph_failed:
            self._enqueue(state)
            return
        graph = state.graphs.get(batch)
        if graph is not None:
            graph.launch(state.stream)
            return
        if batch not in state.warmed:
            # The first run lets TensorRT do its deferred allocations and shape-dependent
            # setup, which must not happen inside a capture.
            self._enqueue(state)
            state.warmed.add(batch)
            return
        try:
            with self._api.capture(state.stream) as captured:
                self._enqueue(state)
        except (RuntimeError, BackendUnavailableError) as exc:
            state.graph_failed.add(batch)
            warnings.warn(
                f"CUDA graph capture failed for batch {batch} ({exc}); running without a graph",
                RuntimeWarning,
                stacklevel=3,
            )
            self._enqueue(state)
            return
        state.graphs[batch] = captured[0]
        captured[0].launch(state.stream)

    @staticmethod
    def _enqueue(state: _ThreadState) -> None:
        if not state.context.execute_async_v3(state.stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def _close(self) -> None:
        threads = getattr(self, "_threads", None)
        if threads is not None:
            self._api.set_device(self.device_index)
            threads.close_all()
        self._engine = None  # contexts first (above), then the engine, then the runtime
        self._runtime = None


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


__all__ = [
    "TENSORRT_HINT",
    "BufferPlan",
    "IOSpec",
    "PerThread",
    "TensorRTBackend",
    "batch_chunks",
    "check_io_against_spec",
    "plan_buffers",
    "profile_batch_range",
    "read_io_specs",
    "tensorrt_version",
]
