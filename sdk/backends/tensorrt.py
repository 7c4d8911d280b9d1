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
A thread's state is released when the thread ends, or by ``release_thread()``, and
``max_contexts`` caps how many exist at once (:class:`PerThread`).

Shapes and CUDA graphs: ``set_input_shape`` is called only when the batch changes (as
Polygraphy's runner does), and a graph is captured or replayed only when the context's last
plain enqueue ran at the same shape: after every shape change TensorRT's first enqueue does
shape-dependent setup, which must neither be captured nor skipped (trtexec enqueues once
before capturing for the same reason).
"""

from __future__ import annotations

import itertools
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import numpy as np

from ..device_info import is_tegra
from ..engine_sidecar import check_compatible, check_host_code_allowed, read_sidecar
from ..errors import (
    BackendUnavailableError,
    IncompatibleModelError,
    InvalidImageError,
    ModelFormatError,
)
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
# TensorRT's HardwareCompatibilityLevel.AMPERE_PLUS: such plans run on compute capability 8.0+.
HARDWARE_COMPATIBLE_MIN_CAPABILITY = (8, 0)


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


def check_hardware_compatible_load(
    sidecar_compute_capability: str,
    hardware_compatible: bool,
    compute_capability: str,
    engine: str | Path,
    rebuild: str,
    tegra: bool = False,
) -> None:
    """Refuse a hardware-compatible (Ampere-plus) engine on a GPU older than compute 8.0, or
    on a Jetson (TensorRT supports hardware compatibility on discrete GPUs only).

    The sidecar's GPU check lets such an engine through on any GPU, and TensorRT would
    otherwise fail inside deserialisation with a less helpful message.
    """
    if not (hardware_compatible or sidecar_compute_capability == "any"):
        return
    if tegra:
        raise IncompatibleModelError(
            f"{engine}: a hardware-compatible engine (--hardware-compatible) does not run on "
            f"Jetson; build one on this device without --hardware-compatible: {rebuild}"
        )
    major, _, minor = compute_capability.partition(".")
    if (int(major), int(minor or 0)) < HARDWARE_COMPATIBLE_MIN_CAPABILITY:
        need = ".".join(map(str, HARDWARE_COMPATIBLE_MIN_CAPABILITY))
        raise IncompatibleModelError(
            f"{engine}: a hardware-compatible engine (--hardware-compatible, Ampere and newer) "
            f"needs a GPU of compute capability {need} or newer, this GPU is "
            f"{compute_capability}; rebuild it on this device without --hardware-compatible: "
            f"{rebuild}"
        )


T = TypeVar("T")
_POLL_S = 0.01  # how often a thread waiting for a free state looks for ended threads


class _Token:
    """Lives in a thread's ``threading.local``: it dies with the thread, and says so."""

    __slots__ = ("key", "__weakref__")

    def __init__(self, key: int) -> None:
        self.key = key


class PerThread(Generic[T]):
    """One lazily created ``T`` per calling thread, released when the thread no longer needs it.

    ``get()`` returns the calling thread's item, made by ``factory`` on first use. An item is
    released (``closer`` runs) when:

    * its thread has ended: noticed through a token in the thread's ``threading.local`` (its
      finalizer only records the key; CPython drops a thread's locals when it ends) and, for
      threads started by ``threading``, ``is_alive()``. The closing itself is deferred to the
      next ``get()`` of any thread, ``reap()`` or ``close_all()``, never run inside a finalizer
      (which may fire during garbage collection in any thread, holding any lock);
    * the thread calls ``release_thread()`` (long-lived pool threads done with the model);
    * ``close_all()`` releases everything, once, at the end.

    ``max_items`` (None: no cap) bounds how many items exist at once: a thread needing a new
    one waits, releasing ended threads' items meanwhile, up to ``wait_s`` seconds, then raises
    TimeoutError. So a server with a thread per request holds at most as many items as threads
    run at once (and ``max_items``), not one per thread it ever ran. ``len()`` counts the items
    held, including those of ended threads not yet reaped.
    """

    def __init__(
        self,
        factory: Callable[[], T],
        closer: Callable[[T], None],
        max_items: int | None = None,
        wait_s: float = 60.0,
    ) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_contexts must be None or >= 1, got {max_items}")
        self._factory, self._closer = factory, closer
        self._max, self._wait_s = max_items, float(wait_s)
        self._local = threading.local()
        self._items: dict[int, tuple[T, threading.Thread]] = {}
        self._dead: deque[int] = deque()  # keys of ended threads (appended by finalizers)
        self._keys = itertools.count()
        self._lock = threading.Condition()
        self._making = 0  # items being made, counted against the cap
        self._closed = False

    def get(self) -> T:
        item = getattr(self._local, "item", None)
        if item is not None:
            if self._dead:  # cheap; lets a busy long-lived thread release ended ones
                self.reap()
            return item
        self._reserve()
        try:
            item = self._factory()
        except BaseException:
            with self._lock:
                self._making -= 1
                self._lock.notify_all()
            raise
        key = next(self._keys)
        token = _Token(key)
        weakref.finalize(token, self._dead.append, key)  # no reference to self: no cycle
        with self._lock:
            self._making -= 1
            closed = self._closed
            if not closed:
                self._items[key] = (item, threading.current_thread())
        if closed:
            self._closer(item)
            raise RuntimeError("the backend was closed")
        self._local.token, self._local.item = token, item
        return item

    def _reserve(self) -> None:
        """Count a new item against the cap, waiting (and reaping) while the cap is reached."""
        deadline = time.monotonic() + self._wait_s
        while True:
            self.reap()
            with self._lock:
                if self._closed:
                    raise RuntimeError("the backend was closed")
                if self._max is None or len(self._items) + self._making < self._max:
                    self._making += 1
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"all {self._max} execution contexts are held by live threads "
                        f"(max_contexts={self._max}) and none was freed in {self._wait_s:g} s: "
                        "call release_thread() in threads done with this model, or raise "
                        "max_contexts"
                    )
                # Woken by release_thread(); ended threads are noticed by polling, because
                # their finalizers must not take this lock.
                self._lock.wait(min(remaining, _POLL_S))

    def reap(self) -> int:
        """Release the items of threads that have ended; returns how many."""
        with self._lock:
            keys = set()
            while self._dead:
                keys.add(self._dead.popleft())
            keys.update(key for key, (_, thread) in self._items.items() if not _alive(thread))
            items = [self._items.pop(key)[0] for key in keys if key in self._items]
            if items:
                self._lock.notify_all()
        self._close_items(items)
        return len(items)

    def release_thread(self) -> bool:
        """Release the calling thread's item now; False if it had none."""
        token = getattr(self._local, "token", None)
        if token is None:
            return False
        del self._local.token, self._local.item
        with self._lock:
            entry = self._items.pop(token.key, None)
            self._lock.notify_all()
        if entry is None:
            return False
        self._closer(entry[0])
        return True

    def __len__(self) -> int:
        return len(self._items)

    def close_all(self) -> None:
        with self._lock:
            items = [item for item, _ in self._items.values()]
            self._items, self._closed = {}, True
            self._lock.notify_all()
        self._local = threading.local()
        self._close_items(items)

    def _close_items(self, items: list[T]) -> None:
        errors = []
        for item in items:
            try:
                self._closer(item)
            except Exception as exc:  # release the rest; report the first failure after
                errors.append(exc)
        if errors:
            raise errors[0]


def _alive(thread: threading.Thread) -> bool:
    try:
        return thread.is_alive()
    except RuntimeError:  # a dummy thread (started outside threading): its token tells
        return True


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
    graph_failed: set[int] = field(default_factory=set)
    shape_batch: int | None = None  # the batch the context's input shapes are set to
    # The batch of the context's last plain (not captured) enqueue since the shapes were last
    # set; a graph may be captured or replayed only at that batch.
    enqueued_batch: int | None = None


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

    ``cuda_graph=True`` replays each batch size's inference as a CUDA graph, which removes
    most per-launch CPU overhead on small Jetson CPUs. Needs cuda-python. A graph is captured,
    and later replayed, only right after a plain run at the same batch size on that context
    (TensorRT's shape-dependent setup runs in the first enqueue after a shape change), so
    repeated batch sizes replay and alternating ones run plainly.

    Each calling thread gets its own execution context, stream and buffers (activation memory
    plus pinned and device buffers for the profile's largest batch). They are released when
    the thread ends (at the next inference of any thread, or ``close()``), or at once by
    ``release_thread()``; ``max_contexts`` caps how many exist at once (a thread needing
    another waits for one to be released, up to a minute, then TimeoutError), for servers
    with many threads on small-memory devices such as Jetson.

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
        max_contexts: int | None = None,
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
        check_hardware_compatible_load(
            sidecar.compute_capability,
            sidecar.hardware_compatible,
            capability,
            engine_path,
            rebuild,
            tegra=is_tegra(),
        )
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
        self.max_contexts = max_contexts
        self._threads: PerThread[_ThreadState] = PerThread(
            self._new_state, self._close_state, max_items=max_contexts
        )

    @property
    def cuda_api(self) -> CudaApi:
        """The CUDA memory layer this engine runs on (for device buffers beside it)."""
        return self._api

    @property
    def input_dtypes(self) -> dict[str, np.dtype]:
        """The engine's input dtypes, which ``infer_device`` inputs must match."""
        return dict(self._input_dtypes)

    def use_device(self) -> None:
        """Make the engine's GPU the calling thread's current CUDA device."""
        self._api.set_device(self.device_index)

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
        from ..cuda_memory import CudaError

        try:
            # A thread that ended mid-call may have left work queued on its stream.
            state.stream.synchronize()
        except CudaError:
            pass  # a broken stream: free the rest anyway
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

    def release_thread(self) -> None:
        """Free the calling thread's execution context, stream and buffers now.

        For long-lived threads (a pool) done with this model; a later call from the thread
        makes new ones. Threads that end are released without this.
        """
        if self._engine is None:
            return
        self._api.set_device(self.device_index)
        self._threads.release_thread()

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

    def infer_device(self, inputs: Mapping[str, Any], stream: Any = None) -> dict[str, np.ndarray]:
        """Run on inputs already in GPU memory (DLPack or ``__cuda_array_interface__``).

        The arrays must be C-contiguous ``[N, ...]`` of the engine's input dtype. They are
        copied device-to-device into this thread's fixed input buffers (no host round trip),
        which keeps tensor addresses fixed for CUDA graphs. Unlike ``infer`` this does not
        scan for NaN/inf (that would need the data on the host).

        Ordering: ``stream`` is the stream that wrote the inputs (an int ``cudaStream_t``, or a
        torch/CuPy/saliq stream; 0 means the legacy default stream), e.g. the one passed to
        ``Preprocessor.cuda(..., stream=s, out=...)``; the copies wait for the work queued on
        it. Without it, DLPack exporters (PyTorch, CuPy, JAX) order their *current* stream
        before the copies, and an interface without a ``stream`` entry is ordered after the
        legacy default stream (``saliq.cuda_memory`` states the rule). Work on any other
        stream must be named with ``stream``.
        """
        from ..cuda_memory import device_array_view, stream_handle

        producer = stream_handle(stream)  # first: a bad argument costs no thread state
        state = self._state()
        state.stream.wait_external(producer)
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
        # The producers may still be writing: one wait per distinct stream, before any copy.
        for producer_stream in dict.fromkeys(view.stream for view in views.values()):
            if producer_stream != producer:
                state.stream.wait_external(producer_stream)
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
        self._set_batch(state, padded)
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

    def _set_batch(self, state: _ThreadState, batch: int) -> None:
        """Set the context's input shapes to ``batch``, only when they change."""
        if state.shape_batch == batch:
            return
        state.shape_batch = state.enqueued_batch = None  # unknown until every input is set
        for name in self.spec.inputs:
            shape = (batch, *self.buffer_plan[name].shape[1:])
            if not state.context.set_input_shape(name, shape):
                raise InvalidImageError(
                    f"{self.name}: TensorRT refused input shape {shape} for {name!r} "
                    f"(profile batch {self.min_batch}..{self.max_batch})"
                )
        state.shape_batch = batch

    def _execute(self, state: _ThreadState, batch: int) -> None:
        if not self.cuda_graph or batch in state.graph_failed or state.enqueued_batch != batch:
            # The first enqueue after a shape change does TensorRT's shape-dependent setup
            # (and deferred allocations), which a graph must neither capture nor skip.
            self._enqueue(state)
            state.enqueued_batch = batch
            return
        graph = state.graphs.get(batch)
        if graph is not None:
            graph.launch(state.stream)
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
    "HARDWARE_COMPATIBLE_MIN_CAPABILITY",
    "TENSORRT_HINT",
    "BufferPlan",
    "IOSpec",
    "PerThread",
    "TensorRTBackend",
    "batch_chunks",
    "check_hardware_compatible_load",
    "check_io_against_spec",
    "plan_buffers",
    "profile_batch_range",
    "read_io_specs",
    "tensorrt_version",
]
