"""The CUDA memory layer: its logic everywhere, real CUDA on GPU machines (``gpu`` marker)."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

from saliq import cuda_memory as cm
from saliq.errors import BackendUnavailableError

from .dlpack_fakes import CaiAndDLPack, DLPackOnly, FakeDLPack
from .fake_runtimes import HostCudaImpl


class _CAI:
    """A stand-in exposing ``__cuda_array_interface__`` (what CuPy/torch tensors carry)."""

    def __init__(self, ptr, shape, typestr="<f4", strides=None, stream=None, **extra):
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "data": (ptr, False),
            "version": 3,
            "strides": strides,
            **({"stream": stream} if stream is not None else {}),
            **extra,
        }


def test_device_array_view_contiguous_and_stream():
    view = cm.device_array_view(_CAI(0x1000, (2, 3, 4), stream=2))
    assert (view.ptr, view.shape, view.dtype, view.stream) == (0x1000, (2, 3, 4), np.float32, 2)
    assert view.nbytes == 2 * 3 * 4 * 4
    # Explicit C strides, and any stride on an extent-1 axis, are still contiguous.
    assert cm.device_array_view(_CAI(8, (2, 3), strides=(12, 4))).shape == (2, 3)
    assert cm.device_array_view(_CAI(8, (1, 3), typestr="<f2", strides=(999, 2))).nbytes == 6


def test_device_array_view_refusals():
    with pytest.raises(ValueError, match="not C-contiguous.*contiguous"):
        cm.device_array_view(_CAI(8, (2, 3), strides=(4, 8)))  # a transposed view
    with pytest.raises(ValueError, match="stream 0"):
        cm.device_array_view(_CAI(8, (2,), stream=0))
    with pytest.raises(ValueError, match="masked"):
        cm.device_array_view(_CAI(8, (2,), mask=object()))
    with pytest.raises(TypeError, match="host memory"):
        cm.device_array_view(np.zeros(3))
    with pytest.raises(TypeError, match="no __cuda_array_interface__ or DLPack"):
        cm.device_array_view([1.0, 2.0])


def test_cuda_api_choice_and_missing_bindings(monkeypatch):
    with pytest.raises(ValueError, match="unknown CUDA implementation"):
        cm.cuda_api("opencl")
    # Neither binding importable: one actionable line with the install command.
    monkeypatch.setattr(cm, "_APIS", {})
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(BackendUnavailableError, match=r'pip install "cuda-python>=12"'):
        cm.cuda_api()
    status = cm.available_implementations()
    assert set(status) == {"cuda-python", "pycuda"}
    assert all(s.startswith("not importable") for s in status.values())
    with pytest.raises(BackendUnavailableError, match="pycuda"):
        cm.cuda_api("pycuda")


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.skipif(_has_gpu(), reason="checks the no-GPU error path")
def test_without_gpu_calls_raise_clear_errors():
    pytest.importorskip("cuda.bindings", reason="cuda-python not installed")
    api = cm.cuda_api("cuda-python")  # importing and choosing work without a driver
    for call in (
        api.device_count,
        api.driver_version,
        lambda: api.compute_capability(0),
        lambda: api.DeviceBuffer(64),
        lambda: api.PinnedBuffer((4,), np.float32),
        api.Stream,
        api.Event,
    ):
        with pytest.raises(BackendUnavailableError) as info:
            call()
        message = str(info.value)
        assert "CUDA driver" in message or "cudaError" in message, message


# ---------------------------------------------------------------------------------------------
# The wrapper classes over a host-memory stand-in for the primitives. This checks saliq's own
# logic (sizes, bounds, frees, stream ordering calls), not CUDA: the GPU tests below do that.
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fake_api():
    return cm.CudaApi(HostCudaImpl())


def test_wrappers_round_trip_and_bounds(fake_api):
    api = fake_api
    assert (api.compute_capability(0), api.driver_version()) == ("8.7", "12.6")
    with pytest.raises(BackendUnavailableError, match="device 3 does not exist"):
        api.compute_capability(3)
    stream = api.Stream()
    assert stream.handle == 7
    src = api.PinnedBuffer((2, 3), np.float32)
    src.array[:] = np.arange(6, dtype=np.float32).reshape(2, 3)
    with api.DeviceBuffer(src.nbytes) as dev:
        api.copy_htod_async(dev, src.array, stream)
        out = np.zeros((2, 3), np.float32)
        api.copy_dtoh_async(out, dev, stream)
        np.testing.assert_array_equal(out, src.array)
        api.memset_async(dev, 0, stream=stream)
        api.copy_dtoh_async(out, dev.ptr, stream)  # a raw address works too
        assert not out.any()
        with pytest.raises(ValueError, match="exceeds"):
            api.copy_htod_async(dev, np.zeros(7, np.float32), stream)
        with pytest.raises(ValueError, match="C-contiguous"):
            api.copy_dtoh_async(np.zeros((3, 2), np.float32).T, dev, stream)
        with pytest.raises(ValueError, match="read-only"):
            readonly = np.zeros(6, np.float32)
            readonly.flags.writeable = False
            api.copy_dtoh_async(readonly, dev, stream)
    assert dev.freed and dev.ptr == 0
    dev.free()  # idempotent
    with pytest.raises(ValueError, match="already freed"):
        api.copy_htod_async(dev, src.array, stream)
    src.free()
    assert src.array.size == 0  # the view of freed memory is dropped
    assert api.impl.live == {}
    with pytest.raises(ValueError, match="positive size"):
        api.DeviceBuffer(0)


def test_external_device_arrays_wait_on_their_stream(fake_api):
    api = fake_api
    stream = api.Stream()
    with api.DeviceBuffer(16) as a, api.DeviceBuffer(16) as b:
        api.memset_async(a, 3, stream=stream)
        producer = _CAI(a.ptr, (4,), stream=2)  # e.g. a torch tensor on the per-thread stream
        api.copy_dtod_async(b, producer, 16, stream)
        assert ("wait", "stream-token", 2) in api.impl.calls
        host = np.zeros(16, np.uint8)
        api.copy_dtoh_async(host, b, stream)
        assert (host == 3).all()
        with pytest.raises(ValueError, match="exceeds"):
            api.copy_dtod_async(b, _CAI(a.ptr, (2,)), 16, stream)  # source only 8 bytes


def test_dlpack_device_arrays_are_ordered_by_the_handshake(fake_api):
    api = fake_api
    stream = api.Stream()
    with api.DeviceBuffer(16) as a, api.DeviceBuffer(16) as b:
        api.memset_async(a, 5, stream=stream)
        producer = FakeDLPack(a.ptr, (4,), dtype=(2, 32, 1))
        api.copy_dtod_async(b, producer, 16, stream)
        # DLPack: the exporter was told our stream; no extra wait is queued on our side.
        assert producer.streams_asked == [stream.handle]
        assert not any(call[0] == "wait" for call in api.impl.calls)
        host = np.zeros(16, np.uint8)
        api.copy_dtoh_async(host, b, stream)
        assert (host == 5).all()


def test_dlpack_is_preferred_over_the_interface(fake_api):
    # PyTorch's interface carries no stream; only the DLPack handshake orders its writes.
    both = CaiAndDLPack(0x3000, (2, 3))
    view = cm.device_array_view(both, stream=77)
    assert both.streams_asked == [77] and view.stream is None and view.ptr == 0x3000
    api = fake_api
    stream = api.Stream()
    with api.DeviceBuffer(24) as a, api.DeviceBuffer(24) as b:
        src = CaiAndDLPack(a.ptr, (2, 3), log=api.impl.calls)
        api.copy_dtod_async(b, src, 24, stream)
        kinds = [call[0] for call in api.impl.calls]
        assert kinds.index("dlpack") < kinds.index("memcpy") and "wait" not in kinds
        assert src.streams_asked == [stream.handle]


class _DLPackRefuses(CaiAndDLPack):
    def __dlpack__(self, stream=None):
        raise BufferError("Can't export tensors on a different CUDA device index")


def test_refused_or_foreign_dlpack_falls_back_to_the_interface():
    view = cm.device_array_view(_DLPackRefuses(0x4000, (4,)), stream=77)
    assert view.ptr == 0x4000 and view.stream == cm.LEGACY_DEFAULT_STREAM
    managed = CaiAndDLPack(0x5000, (4,), device_type=13)  # CUDA managed memory
    assert cm.device_array_view(managed, stream=77).ptr == 0x5000
    assert managed.streams_asked == []
    with pytest.raises(TypeError, match="different CUDA device.*"):
        cm.device_array_view(DLPackOnly(_DLPackRefuses(0x4000, (4,))), stream=77)


def test_interface_stream_rule(fake_api):
    # No "stream" key (PyTorch's version 2): the legacy default stream; an explicit None: the
    # producer says no wait is needed; an int: that stream.
    assert cm.device_array_view(_CAI(8, (2,))).stream == cm.LEGACY_DEFAULT_STREAM == 1
    no_sync = _CAI(8, (2,))
    no_sync.__cuda_array_interface__["stream"] = None
    assert cm.device_array_view(no_sync).stream is None
    assert cm.device_array_view(_CAI(8, (2,), stream=0x99)).stream == 0x99
    api = fake_api
    stream = api.Stream()
    with api.DeviceBuffer(16) as a, api.DeviceBuffer(16) as b:
        api.copy_dtod_async(b, _CAI(a.ptr, (4,)), 16, stream)
        assert api.impl.calls[-2:] == [
            ("wait", "stream-token", cm.LEGACY_DEFAULT_STREAM),
            ("memcpy", "dtod", 16, "stream-token"),
        ]


class _TorchStream:
    cuda_stream = 0x70


class _CuPyStream:
    ptr = 0x71


class _CudaStreamProtocol:
    def __cuda_stream__(self):
        return (0, 0x72)


def test_stream_handle_accepts_the_common_stream_objects(fake_api):
    assert cm.stream_handle(None) is None
    assert cm.stream_handle(0x55) == 0x55
    assert cm.stream_handle(0) == cm.LEGACY_DEFAULT_STREAM  # torch's default stream reports 0
    assert cm.stream_handle(_TorchStream()) == 0x70
    assert cm.stream_handle(_CuPyStream()) == 0x71
    assert cm.stream_handle(_CudaStreamProtocol()) == 0x72
    assert cm.stream_handle(fake_api.Stream()) == 7  # a saliq Stream (.handle)
    for bad in (True, -3, "s", 1.5):
        with pytest.raises(TypeError, match="stream must be None, an int cudaStream_t"):
            cm.stream_handle(bad)


def test_events_and_stream_close(fake_api):
    start, end = fake_api.Event(), fake_api.Event()
    stream = fake_api.Stream()
    start.record(stream)
    end.record(stream).synchronize()
    assert cm.elapsed_ms(start, end) == 1.5
    stream.close()
    stream.close()
    assert fake_api.impl.calls.count(("stream_destroy", "stream-token")) == 1


def test_graphs_need_cuda_python(fake_api):
    assert not fake_api.supports_graphs
    with pytest.raises(BackendUnavailableError, match="cuda-python"):
        with fake_api.capture(fake_api.Stream()):
            pass


# ---------------------------------------------------------------------------------------------
# Real CUDA (GPU machines), over every importable implementation
# ---------------------------------------------------------------------------------------------


def _impl_param(name: str, module: str):
    return pytest.param(name, marks=pytest.mark.gpu, id=f"{name}:{module}")


IMPLS = [_impl_param("cuda-python", "cuda.bindings"), _impl_param("pycuda", "pycuda.driver")]


@pytest.fixture(params=IMPLS)
def gpu_api(request):
    pytest.importorskip(
        "cuda.bindings" if request.param == "cuda-python" else "pycuda.driver",
        reason=f"{request.param} not installed",
    )
    api = cm.cuda_api(request.param)
    api.set_device(0)
    return api


def test_gpu_identity(gpu_api):
    assert gpu_api.device_count() >= 1
    major, minor = gpu_api.compute_capability(0).split(".")
    assert int(major) >= 3 and minor.isdigit()
    assert float(gpu_api.driver_version()) >= 11.0


def test_gpu_round_trip_memset_events(gpu_api):
    api = gpu_api
    stream = api.Stream()
    data = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    pinned = api.PinnedBuffer(data.shape, data.dtype)
    pinned.array[:] = data
    back = api.PinnedBuffer(data.shape, data.dtype)
    start, end = api.Event(), api.Event()
    with api.DeviceBuffer(data.nbytes) as dev, api.DeviceBuffer(data.nbytes) as dev2:
        start.record(stream)
        api.copy_htod_async(dev, pinned.array, stream)
        api.copy_dtod_async(dev2, dev, data.nbytes, stream)
        api.copy_dtoh_async(back.array, dev2, stream)
        end.record(stream)
        stream.synchronize()
        np.testing.assert_array_equal(back.array, data)
        end.synchronize()
        assert cm.elapsed_ms(start, end) >= 0.0
        api.memset_async(dev2, 0, stream=stream)
        api.copy_dtoh_async(back.array, dev2, stream)
        stream.synchronize()
        assert not back.array.any()
    pinned.free()
    back.free()
    stream.close()


def test_gpu_torch_tensor_as_device_input(gpu_api):
    torch = pytest.importorskip("torch")
    tensor = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4) * 2
    api = gpu_api
    stream = api.Stream()
    out = np.zeros((3, 4), np.float32)
    with api.DeviceBuffer(out.nbytes) as dev:
        api.copy_dtod_async(dev, tensor, out.nbytes, stream)  # waits on torch's stream
        api.copy_dtoh_async(out, dev, stream)
        stream.synchronize()
    np.testing.assert_array_equal(out, tensor.cpu().numpy())
    with pytest.raises(ValueError, match="contiguous"):
        api.copy_dtoh_async(out.T.copy(), tensor.T, stream)


def test_gpu_dlpack_only_tensor_as_device_input(gpu_api):
    torch = pytest.importorskip("torch")
    api = gpu_api
    stream = api.Stream()
    tensor = torch.arange(24, dtype=torch.float16, device="cuda").reshape(2, 12) + 1
    out = np.zeros((2, 12), np.float16)
    with api.DeviceBuffer(out.nbytes) as dev:
        api.copy_dtod_async(dev, DLPackOnly(tensor), out.nbytes, stream)
        api.copy_dtoh_async(out, dev, stream)
        stream.synchronize()
    np.testing.assert_array_equal(out, tensor.cpu().numpy())


def test_gpu_graph_capture_replays(gpu_api):
    if not gpu_api.supports_graphs:
        pytest.skip(f"{gpu_api.name} offers no CUDA graphs in saliq")
    api = gpu_api
    stream = api.Stream()
    host = api.PinnedBuffer((256,), np.uint8)
    with api.DeviceBuffer(256) as dev:
        with api.capture(stream) as captured:
            api.memset_async(dev, 9, stream=stream)
        api.memset_async(dev, 0, stream=stream)
        captured[0].launch(stream)
        api.copy_dtoh_async(host.array, dev, stream)
        stream.synchronize()
        assert (host.array == 9).all()
        captured[0].close()
    host.free()


def _rt_path(node: ast.AST) -> list[str] | None:
    """['cudaMemcpyAsync'] for ``self.rt.cudaMemcpyAsync``; None for anything else."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if names and names[-1] == "rt" and isinstance(node, ast.Name) and node.id == "self":
        return list(reversed(names[:-1]))
    return None


def test_cuda_python_calls_match_the_installed_bindings():
    """Every ``self.rt.X(...)`` in the cuda-python implementation exists and takes those args.

    cuda-python ships no type stubs, but its Cython functions carry signatures: this binds
    each call's positional/keyword arguments to the real function of the installed version,
    and resolves every enum path (``self.rt.cudaStreamCaptureMode.cudaStream...``).
    """
    rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    tree = ast.parse(Path(cm.__file__).read_text())
    calls = attributes = 0
    for node in ast.walk(tree):
        path = _rt_path(node.func) if isinstance(node, ast.Call) else None
        if path:
            target = rt
            for name in path:
                target = getattr(target, name)
            if len(path) == 1:  # a runtime function (enum constructors are not checked)
                arguments = [None] * len(node.args)
                inspect.signature(target).bind(*arguments, **{k.arg: None for k in node.keywords})
                calls += 1
        path = _rt_path(node)
        if path:
            target = rt
            for name in path:
                assert hasattr(target, name), f"cuda.bindings.runtime has no {'.'.join(path)}"
                target = getattr(target, name)
            attributes += 1
    assert calls >= 20 and attributes >= calls, (calls, attributes)
