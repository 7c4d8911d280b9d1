"""Stand-ins for CUDA and TensorRT on host memory, to run saliq's runtime code without either.

``HostCudaImpl`` gives :class:`saliq.cuda_memory.CudaApi` host memory for device memory and
records the calls it gets. ``fake_tensorrt`` builds a ``tensorrt`` module whose one engine is
the tiny test model (score = sigmoid(mean(image)), saliency = 16x16 average pool of the
channel mean) computed with numpy on the addresses the backend binds. Together they run
``TensorRTBackend`` end to end: sidecar checks, I/O specs, buffer plans, chunking and padding,
per-thread contexts, device inputs. They check saliq's logic, not TensorRT or CUDA.

Where a real GPU would give wrong results or a failed capture, the stand-ins raise
:class:`StandInViolation` instead of computing anyway: an enqueue captured into a CUDA graph
without a plain enqueue at the context's current shape first, and a graph replayed while the
context is set to another shape.
"""

from __future__ import annotations

import ctypes
import types

import numpy as np

from saliq import cuda_memory as cm


class StandInViolation(AssertionError):
    """A use of TensorRT/CUDA that a GPU would punish. An AssertionError so that no fallback in
    saliq (which catches RuntimeError around graph capture) can swallow it."""


class HostCudaImpl(cm._Impl):
    """The CUDA primitives on host memory, recording the calls saliq makes."""

    name = "host-fake"

    def __init__(self):
        self.live: dict[int, ctypes.Array] = {}
        self.calls: list[tuple] = []

    def device_count(self):
        return 1

    def driver_version(self):
        return 12060

    def compute_capability(self, device):
        return (8, 7)

    def set_device(self, device):
        self.calls.append(("set_device", device))

    def _alloc(self, nbytes):
        block = ctypes.create_string_buffer(nbytes)
        ptr = ctypes.addressof(block)
        self.live[ptr] = block
        return ptr, ptr

    def malloc(self, nbytes):
        return self._alloc(nbytes)

    def free(self, token):
        del self.live[token]

    malloc_host = malloc
    free_host = free

    def stream_create(self):
        return 7, "stream-token"

    def stream_destroy(self, token):
        self.calls.append(("stream_destroy", token))

    def stream_synchronize(self, token):
        self.calls.append(("sync", token))

    def stream_wait_external(self, token, external_stream):
        self.calls.append(("wait", token, external_stream))

    def event_create(self):
        return object()

    def event_destroy(self, token):
        pass

    def event_record(self, token, stream):
        self.calls.append(("record", stream))

    def event_synchronize(self, token):
        pass

    def event_elapsed_ms(self, start, end):
        return 1.5

    def memcpy_async(self, dst, src, nbytes, kind, stream):
        self.calls.append(("memcpy", kind, nbytes, stream))
        ctypes.memmove(dst, src, nbytes)

    def memset_async(self, ptr, value, nbytes, stream):
        ctypes.memset(ptr, value, nbytes)


class HostGraphCudaImpl(HostCudaImpl):
    """HostCudaImpl with CUDA graphs: work enqueued while capturing is recorded, not run."""

    supports_graphs = True

    def __init__(self):
        super().__init__()
        self.capturing: list | None = None
        self.fail_capture = False

    def begin_capture(self, stream):
        if self.fail_capture:
            raise RuntimeError("stream capture is not supported here (stand-in)")
        self.capturing = []

    def end_capture(self, stream):
        work, self.capturing = self.capturing, None
        self.calls.append(("graph", len(work)))
        return work, work

    def graph_launch(self, graph_exec, stream):
        self.calls.append(("graph_launch",))
        for step in graph_exec:
            step()

    def graph_destroy(self, graph, graph_exec):
        self.calls.append(("graph_destroy",))


def _host_array(ptr: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.ctypeslib.as_array((ctypes.c_uint8 * count).from_address(ptr))
    return raw.view(dtype).reshape(shape)


def tiny_model(image: np.ndarray) -> dict[str, np.ndarray]:
    """The reference computation (the same graph as the tests' tiny ONNX model)."""
    score = 1.0 / (1.0 + np.exp(-image.mean(axis=(1, 2, 3))))
    grey = image.mean(axis=1, keepdims=True)
    n = image.shape[0]
    saliency = grey.reshape(n, 1, 2, 16, 2, 16).mean(axis=(3, 5))
    return {"score": score.astype(np.float32), "saliency": saliency.astype(np.float32)}


def fake_tensorrt(
    version: str = "10.3.0",
    batch: tuple[int, int, int] = (1, 4, 8),
    cuda: HostGraphCudaImpl | None = None,
    compute=None,
    io_shapes: dict[str, tuple[int, ...]] | None = None,
    inputs: tuple[str, ...] = ("image",),
    half: tuple[str, ...] = (),
):
    """A ``tensorrt`` module with just the API saliq's runtime uses; ``.log`` records calls.

    With ``cuda``, an inference enqueued while that stand-in captures a graph is recorded
    into the graph instead of running, as on a GPU. ``compute(addresses, input_shape, stream)``
    replaces the numpy computation on host addresses (the GPU tests compute on the device).
    ``io_shapes`` (batch axis -1) and ``inputs`` (which of them are inputs; the first one's
    shape is ``input_shape``) describe another engine than the tiny model; give ``compute``.
    Tensors named in ``half`` are float16 (a strongly typed FP16 engine's I/O).
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.log = []
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.TensorLocation = types.SimpleNamespace(DEVICE="DEVICE", HOST="HOST")
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF")
    trt.nptype = lambda dtype: {"FLOAT": np.float32, "HALF": np.float16}[dtype]
    shapes = io_shapes or {"image": (-1, 3, 32, 32), "score": (-1,), "saliency": (-1, 1, 2, 2)}
    names = list(shapes)

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    class Context:
        def __init__(self):
            self.addresses, self.input_shape = {}, None
            # The shape of the last plain (not captured) enqueue since the shape last changed:
            # TensorRT's shape-dependent setup runs there, and must not run inside a capture.
            self.plain_shape = None

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def set_input_shape(self, name, shape):
            shape = tuple(shape)
            trt.log.append(("set_input_shape", name, shape[0]))
            if cuda is not None and cuda.capturing is not None:
                raise StandInViolation("set_input_shape called while a CUDA graph is captured")
            low, high = batch[0], batch[2]
            if name != inputs[0]:
                return low <= shape[0] <= high and tuple(shape[1:]) == shapes[name][1:]
            if shape != self.input_shape:
                self.plain_shape = None
            self.input_shape = shape
            return low <= shape[0] <= high and tuple(shape[1:]) == shapes[name][1:]

        def get_tensor_shape(self, name):
            return (self.input_shape[0], *shapes[name][1:])

        def execute_async_v3(self, stream):
            shape = self.input_shape
            if shape is None:
                raise StandInViolation("execute_async_v3 before set_input_shape")

            def run():
                trt.log.append(("execute", shape[0], stream))
                if compute is not None:
                    compute(dict(self.addresses), shape, stream)
                    return
                image = _host_array(self.addresses["image"], shape)
                for name, value in tiny_model(image).items():
                    _host_array(self.addresses[name], value.shape)[...] = value

            def replay():
                trt.log.append(("replay", shape[0]))
                if self.input_shape != shape or self.plain_shape != shape:
                    raise StandInViolation(
                        f"graph captured at batch {shape[0]} replayed while the context is at "
                        f"{self.input_shape[0]} (last plain enqueue at this shape: "
                        f"{None if self.plain_shape is None else self.plain_shape[0]})"
                    )
                run()

            if cuda is not None and cuda.capturing is not None:
                if self.plain_shape != shape:
                    raise StandInViolation(
                        f"capture at batch {shape[0]} right after a shape change, without a "
                        "plain enqueue at that shape first"
                    )
                trt.log.append(("capture", shape[0]))
                cuda.capturing.append(replay)
            else:
                trt.log.append(("enqueue", shape[0]))
                run()
                self.plain_shape = shape
            return True

    class Engine:
        num_io_tensors = len(names)

        def get_tensor_name(self, index):
            return names[index]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name in inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_location(self, name):
            return trt.TensorLocation.DEVICE

        def get_tensor_profile_shape(self, name, profile):
            return tuple((b, *shapes[name][1:]) for b in batch)

        def get_tensor_shape(self, name):
            return shapes[name]

        def get_tensor_dtype(self, name):
            return trt.DataType.HALF if name in half else trt.DataType.FLOAT

        def create_execution_context(self):
            trt.log.append(("context",))
            return Context()

    class Runtime:
        engine_host_code_allowed = False

        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            trt.log.append(("deserialize", bytes(plan), self.engine_host_code_allowed))
            return Engine() if plan == PLAN else None

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


PLAN = b"stand-in plan"


def tiny_onnx(path, spec):
    """score = sigmoid(mean(image)); saliency = 16x16 average pool of the channel mean, as an
    ONNX graph on [N, 3, 32, 32] carrying ``spec`` (the stand-in engines compute the same)."""
    import onnx
    from onnx import TensorProto, helper

    from saliq.spec import METADATA_KEY

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sigmoid", ["m"], ["score"]),
        helper.make_node("ReduceMean", ["image"], ["c"], axes=[1], keepdims=1),
        helper.make_node(
            "AveragePool", ["c"], ["saliency"], kernel_shape=[16, 16], strides=[16, 16]
        ),
    ]
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("saliency", TensorProto.FLOAT, ["N", 1, 2, 2]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", [image], outputs),
        opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8,
    )
    helper.set_model_props(model, {METADATA_KEY: spec.to_json()})
    onnx.save(model, str(path))
    return path
