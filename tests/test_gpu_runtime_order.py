"""The GPU runtime on a GPU (issue 13): producer races and CUDA graphs across batch sizes.

The stand-in tests (tests/test_cuda_memory.py, tests/test_tensorrt_runtime.py) check the
order of saliq's waits and TensorRT calls; these run the same paths on real CUDA streams,
where a missing wait reads memory before its producer wrote it. Every producer here spins
on its stream first (``torch.cuda._sleep``), so an unordered copy would run long before the
write lands.

* The memory layer and ``TensorRTBackend.infer_device`` over a stand-in ``tensorrt`` whose
  engine computes the tiny model with torch on the bound device addresses, on the stream it
  is given: real streams, real copies, no TensorRT needed (the lent GPU machines have none).
* The same race, and batch sizes 1, 8, 3, 8, 1 with CUDA graphs bit-equal to a run without,
  on a real TensorRT engine (skipped where TensorRT is not installed).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from saliq import cuda_memory as cm
from saliq.backends import tensorrt as trt_backend
from saliq.backends.tensorrt import TensorRTBackend
from saliq.engine_sidecar import EngineSidecar, Profile, sha256_file, write_sidecar

from .fake_runtimes import PLAN, fake_tensorrt, tiny_model
from .test_tensorrt_runtime import SPEC, _build_engine

pytestmark = pytest.mark.gpu

# About 0.25 s of spinning at 2 GHz: far longer than an unordered copy takes to start.
SLEEP_CYCLES = 500_000_000


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch with CUDA")
    return torch


def _cuda_python_api() -> cm.CudaApi:
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    api = cm.cuda_api("cuda-python")
    api.set_device(0)
    return api


def _write_late(torch, stream, target, value) -> None:
    """Queue on ``stream`` a long spin, then the copy of ``value`` into ``target``."""
    with torch.cuda.stream(stream):
        torch.cuda._sleep(SLEEP_CYCLES)
        target.copy_(value, non_blocking=True)


def _zeros_like(torch, value):
    target = torch.zeros_like(value)
    torch.cuda.synchronize()  # nothing but the late write may be pending on it
    return target


class _CaiOnly:
    """A tensor seen through its ``__cuda_array_interface__`` only (PyTorch's: no stream key)."""

    def __init__(self, tensor) -> None:
        self.tensor = tensor
        self.__cuda_array_interface__ = tensor.__cuda_array_interface__


class _DeviceArray:
    """float32 device memory at ``ptr``, for ``torch.as_tensor`` (zero-copy)."""

    def __init__(self, ptr: int, shape: tuple[int, ...]) -> None:
        self.__cuda_array_interface__ = {
            "shape": tuple(int(d) for d in shape),
            "typestr": "<f4",
            "data": (int(ptr), False),
            "version": 2,
            "strides": None,
        }


def test_gpu_memory_layer_copies_after_the_producer():
    torch = _torch_cuda()
    api = _cuda_python_api()
    n = 1 << 20
    value = torch.full((n,), 3.0, device="cuda")
    side = torch.cuda.Stream()
    ours = api.Stream()
    out = np.zeros(n, np.float32)
    with api.DeviceBuffer(4 * n) as dev:

        def read(source) -> np.ndarray:
            api.copy_dtod_async(dev, source, 4 * n, ours)
            api.copy_dtoh_async(out, dev, ours)
            ours.synchronize()
            return out.copy()

        # The producer's stream named: ours waits on it.
        target = _zeros_like(torch, value)
        _write_late(torch, side, target, value)
        ours.wait_external(cm.stream_handle(side))
        assert (read(target) == 3).all()
        # DLPack while the producer's stream is current: the handshake orders it.
        target = _zeros_like(torch, value)
        _write_late(torch, side, target, value)
        with torch.cuda.stream(side):
            got = read(target)
        assert (got == 3).all()
        # The interface alone (no stream key) after work on the legacy default stream.
        target = _zeros_like(torch, value)
        _write_late(torch, torch.cuda.default_stream(), target, value)
        assert (read(_CaiOnly(target)) == 3).all()
        # Control: a raw address carries nothing to wait on, so the copy may run early.
        target = _zeros_like(torch, value)
        _write_late(torch, side, target, value)
        early = read(target.data_ptr())
        torch.cuda.synchronize()
    ours.close()
    if (early == 3).all():
        pytest.skip("the unordered control copy did not race here; the checks above prove less")


def _torch_engine(tmp_path, monkeypatch, torch, api: cm.CudaApi, batch=(1, 4, 8)):
    """An engine file for a stand-in ``tensorrt`` that computes the tiny model with torch."""

    def compute(addresses, shape, stream):
        n = shape[0]
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            image = torch.as_tensor(_DeviceArray(addresses["image"], shape), device="cuda")
            score = torch.sigmoid(image.mean(dim=(1, 2, 3)))
            grey = image.mean(dim=1, keepdim=True)
            saliency = grey.reshape(n, 1, 2, 16, 2, 16).mean(dim=(3, 5))
            for name, result in (("score", score), ("saliency", saliency)):
                bound = _DeviceArray(addresses[name], tuple(result.shape))
                torch.as_tensor(bound, device="cuda").copy_(result)

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(batch=batch, compute=compute))
    # The backend keeps one TensorRT logger per process: keep the stand-in's out of later tests.
    monkeypatch.setattr(trt_backend, "_LOGGER", None)
    engine = tmp_path / "torch.engine"
    engine.write_bytes(PLAN)
    write_sidecar(
        engine,
        EngineSidecar(
            spec=SPEC,
            tensorrt_version="10.3.0",  # the stand-in's version
            compute_capability=api.compute_capability(0),
            precision="fp32",
            profiles=(Profile(*batch),),
            plan_sha256=sha256_file(engine),
        ),
    )
    return engine


def _check_producer_ordering(torch, backend: TensorRTBackend, atol: float) -> None:
    x = np.random.default_rng(11).standard_normal((6, 3, 32, 32)).astype(np.float32)
    want = tiny_model(x)
    np.testing.assert_allclose(backend.infer({"image": x})["score"], want["score"], atol=atol)
    value = torch.from_numpy(x).cuda()
    side = torch.cuda.Stream()

    def check(got):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=atol, err_msg=name)

    # Written on a busy side stream, which is then named.
    target = _zeros_like(torch, value)
    _write_late(torch, side, target, value)
    check(backend.infer_device({"image": target}, stream=side))
    # DLPack with no stream named, the side stream current: the handshake orders it.
    target = _zeros_like(torch, value)
    _write_late(torch, side, target, value)
    with torch.cuda.stream(side):
        check(backend.infer_device({"image": target}))
    # The version-2 interface alone, written on the legacy default stream.
    target = _zeros_like(torch, value)
    _write_late(torch, torch.cuda.default_stream(), target, value)
    check(backend.infer_device({"image": _CaiOnly(target)}))
    torch.cuda.synchronize()


def test_gpu_infer_device_waits_for_the_producer(tmp_path, monkeypatch):
    torch = _torch_cuda()
    api = _cuda_python_api()
    engine = _torch_engine(tmp_path, monkeypatch, torch, api)
    with TensorRTBackend(engine, cuda_impl="cuda-python") as backend:
        _check_producer_ordering(torch, backend, atol=1e-5)


def test_gpu_tensorrt_infer_device_waits_for_the_producer(tmp_path):
    torch = _torch_cuda()
    engine, _ = _build_engine(tmp_path)  # skips without TensorRT
    with TensorRTBackend(engine) as backend:
        _check_producer_ordering(torch, backend, atol=1e-5)


def test_gpu_tensorrt_graphs_across_batch_sizes_are_bit_equal(tmp_path):
    engine, _ = _build_engine(tmp_path)  # skips without TensorRT; profile batch 1..8
    x = np.random.default_rng(12).standard_normal((20, 3, 32, 32)).astype(np.float32)
    want = tiny_model(x)
    # Alternating sizes (each after a shape change), repeats (captured, then replayed), and
    # 20 = chunks 8, 8, 4 (graph 8 replayed after the context ran 4).
    sizes = (1, 8, 3, 8, 1, 1, 1, 8, 8, 8, 20, 20, 20, 3)
    with (
        TensorRTBackend(engine, cuda_graph=False) as plain,
        TensorRTBackend(engine, cuda_graph=True) as graphed,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture warns: fail instead
        for n in sizes:
            reference = plain.infer({"image": x[:n]})
            got = graphed.infer({"image": x[:n]})
            for name in want:
                np.testing.assert_array_equal(got[name], reference[name], err_msg=f"{name} n={n}")
                np.testing.assert_allclose(got[name], want[name][:n], atol=1e-5)


def _check_gpu_assessor_matches_host(torch, backend: TensorRTBackend) -> None:
    """Assessor "auto" picks the GPU preprocessing into the engine's inputs; its results equal
    the host path's, for host frames (uploaded as pixels) and CUDA tensors read in place."""
    from saliq.assess import Assessor
    from saliq.preprocess import native_module

    native = native_module()
    reason = native.cuda_unavailable_reason() if native else "saliq._preproc is not built"
    if reason:
        pytest.skip(f"GPU preprocessing unavailable: {reason}")
    gpu = Assessor(backend)
    host = Assessor(backend, preprocessing="host")
    assert gpu.preprocessing_used == "cuda", gpu.preprocessing_note
    rng = np.random.default_rng(31)
    frames = [rng.integers(0, 256, (120 + 9 * i, 200 - 7 * i, 3), np.uint8) for i in range(11)]
    got, want = gpu.assess(frames, saliency_map=True), host.assess(frames, saliency_map=True)
    on_device = gpu.assess([torch.from_numpy(f).cuda() for f in frames[:3]])
    for a, b in zip([*got, *on_device], [*want, *want[:3]]):
        assert a.score == pytest.approx(b.score, abs=1e-4)
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-4)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.saliency_full, b.saliency_full, atol=1e-4)
    gpu.device_pipeline.close()


def test_gpu_assessor_preprocesses_on_the_gpu_into_the_engine(tmp_path, monkeypatch):
    torch = _torch_cuda()
    api = _cuda_python_api()
    engine = _torch_engine(tmp_path, monkeypatch, torch, api)
    with TensorRTBackend(engine, cuda_impl="cuda-python") as backend:
        _check_gpu_assessor_matches_host(torch, backend)


def test_gpu_tensorrt_assessor_preprocesses_on_the_gpu(tmp_path):
    torch = _torch_cuda()
    engine, _ = _build_engine(tmp_path)  # skips without TensorRT
    with TensorRTBackend(engine) as backend:
        _check_gpu_assessor_matches_host(torch, backend)
