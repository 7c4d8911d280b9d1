"""saliq._preproc's CUDA path equals its CPU twin (host and device inputs, streams, out=)."""

import numpy as np
import pytest

from .dlpack_fakes import DLPackOnly

P = pytest.importorskip("saliq._preproc", reason="the native extension is not built")

pytestmark = pytest.mark.gpu
ARGS = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
TOL = {"float32": 1e-5, "float16": 2e-3}


@pytest.fixture(autouse=True)
def _needs_cuda_build():
    if not P.cuda_available():
        pytest.skip(f"CUDA preprocessing unavailable: {P.cuda_unavailable_reason()}")


def _frames(fmt: str, dtype=np.uint8, n: int = 2, hw=(270, 480)):
    rng = np.random.default_rng(0)
    h, w = hw
    shape = {"NV12": (h * 3 // 2, w), "GRAY": (h, w), "BGRA": (h, w, 4), "RGBA": (h, w, 4)}
    hi = 65536 if dtype == np.uint16 else 256
    return rng.integers(0, hi, (n, *shape.get(fmt, (h, w, 3)))).astype(dtype)


def _same(gpu: dict, cpu: dict, dtype: str) -> None:
    for key in cpu:
        np.testing.assert_allclose(
            np.asarray(gpu[key], np.float64),
            cpu[key].astype(np.float64),
            atol=TOL[dtype],
            err_msg=key,
        )


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("depth", [np.uint8, np.uint16])
@pytest.mark.parametrize("fmt", ["BGR", "RGB", "BGRA", "RGBA", "GRAY", "NV12"])
def test_cuda_equals_cpu_host_arrays(fmt, depth, dtype):
    frames = _frames(fmt, depth)
    cpu = P.preprocess(frames, fmt, 192, 256, dtype=dtype, **ARGS)
    gpu = P.preprocess_cuda(frames, fmt, 192, 256, dtype=dtype, **ARGS)
    _same(gpu, cpu, dtype)


def test_cuda_torch_device_inputs_outputs_and_stream():
    torch = pytest.importorskip("torch")
    frames = _frames("BGR", hw=(1080, 1920))
    cpu = P.preprocess(frames, "BGR", 384, 512, **ARGS)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        dev = torch.from_numpy(frames).cuda()
        out = {
            "image": torch.empty((2, 3, 384, 512), device="cuda"),
            "gradient": torch.empty((2, 1, 384, 512), device="cuda"),
            "prior": torch.empty((2, 1, 96, 128), device="cuda"),
        }
    stream.synchronize()
    P.preprocess_cuda(dev, "BGR", 384, 512, stream=stream, out=out, **ARGS)
    stream.synchronize()
    _same({k: v.cpu().numpy() for k, v in out.items()}, cpu, "float32")
    listed = P.preprocess_cuda([dev[0], dev[1]], "BGR", 384, 512, stream=stream, **ARGS)
    _same(listed, cpu, "float32")


def test_cuda_dlpack_only_device_inputs_and_outputs():
    torch = pytest.importorskip("torch")
    frames = _frames("RGBA", np.uint16, hw=(200, 300))
    cpu = P.preprocess(frames, "RGBA", 96, 128, dtype="float16", **ARGS)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        dev = torch.from_numpy(frames).cuda()  # queued on `stream`: the handshake must order it
        shapes = {"image": (2, 3, 96, 128), "gradient": (2, 1, 96, 128), "prior": (2, 1, 24, 32)}
        out = {k: torch.empty(s, dtype=torch.float16, device="cuda") for k, s in shapes.items()}
    P.preprocess_cuda(
        DLPackOnly(dev),
        "RGBA",
        96,
        128,
        dtype="float16",
        stream=stream,
        out={k: DLPackOnly(v) for k, v in out.items()},
        **ARGS,
    )
    stream.synchronize()
    _same({k: v.cpu().numpy() for k, v in out.items()}, cpu, "float16")
    listed = P.preprocess_cuda(
        [DLPackOnly(dev[0]), DLPackOnly(dev[1])], "RGBA", 96, 128, dtype="float16", **ARGS
    )
    _same(listed, cpu, "float16")


def test_cuda_cupy_device_inputs():
    cp = pytest.importorskip("cupy")
    frames = _frames("NV12", hw=(240, 320))
    cpu = P.preprocess(frames, "NV12", 128, 160, matrix="bt709", yuv_range="full", **ARGS)
    with cp.cuda.Stream(non_blocking=True) as stream:
        gpu = P.preprocess_cuda(
            cp.asarray(frames),
            "NV12",
            128,
            160,
            matrix="bt709",
            yuv_range="full",
            stream=stream,
            **ARGS,
        )
    _same(gpu, cpu, "float32")


def test_preprocessor_cuda_equals_its_cpu_call():
    from saliq import InvalidImageError, Preprocessor

    pre = Preprocessor(224, 224, ARGS["mean"], ARGS["std"], dtype="float16")
    frames = _frames("BGR", hw=(720, 1280))
    _same(pre.cuda(frames), pre(list(frames)), "float16")
    with pytest.raises(InvalidImageError, match="NV12"):
        pre.cuda([np.zeros((5, 6), np.uint8)], fmt="NV12")


def test_cuda_bad_input_is_an_exception():
    with pytest.raises(TypeError, match="uint8 or uint16"):
        P.preprocess_cuda([np.zeros((4, 4, 3), np.float32)], "RGB", 32, 32)


# Version 2 (docs/preprocessing.md): crop views on the GPU. The crops are placed on the host
# from the GPU's float32 prior: boxes and weights must be what saliq.views gives on that prior,
# and (the two priors differ by float32 rounding only) the CPU twin's boxes too.
VIEWS = dict(detail_crops=4, crop_size=96, salient_crops=3, grid_crops=3, grid_size=64)
VIEW_KEYS = ("crops", "crop_gradient", "crop_boxes", "crop_weights", "grid", "grid_boxes")


def _same_views(gpu: dict, cpu: dict, gpu_prior32, frames, fmt: str, dtype: str) -> None:
    from saliq import views as V

    cfg = V.ViewConfig(**VIEWS)
    for i, frame in enumerate(frames):
        height = frame.shape[0] * 2 // 3 if fmt == "NV12" else frame.shape[0]
        windows, side, weights = V.place_detail_crops(
            np.asarray(gpu_prior32[i, 0], np.float32), frame.shape[1], height, cfg
        )
        np.testing.assert_array_equal(
            np.asarray(gpu["crop_boxes"][i]), V.boxes(windows, side, frame.shape[1], height)
        )
        np.testing.assert_array_equal(np.asarray(gpu["crop_weights"][i]), weights)
    np.testing.assert_array_equal(np.asarray(gpu["crop_boxes"]), cpu["crop_boxes"])
    np.testing.assert_array_equal(np.asarray(gpu["grid_boxes"]), cpu["grid_boxes"])
    np.testing.assert_allclose(np.asarray(gpu["crop_weights"]), cpu["crop_weights"], atol=1e-5)
    _same(gpu, {k: cpu[k] for k in ("crops", "crop_gradient", "grid")}, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("depth", [np.uint8, np.uint16])
@pytest.mark.parametrize("fmt", ["BGR", "RGB", "BGRA", "RGBA", "GRAY", "NV12"])
def test_cuda_crop_views_equal_cpu_host_arrays(fmt, depth, dtype):
    frames = _frames(fmt, depth, hw=(1080, 1920))
    cpu = P.preprocess(frames, fmt, 224, 224, dtype=dtype, views=VIEWS, **ARGS)
    gpu = P.preprocess_cuda(frames, fmt, 224, 224, dtype=dtype, views=VIEWS, **ARGS)
    prior32 = P.preprocess_cuda(frames, fmt, 224, 224, views=VIEWS, **ARGS)["prior"]
    _same(gpu, {k: cpu[k] for k in ("image", "gradient", "prior")}, dtype)
    _same_views(gpu, cpu, prior32, list(frames), fmt, dtype)
    v1 = P.preprocess_cuda(frames, fmt, 224, 224, dtype=dtype, **ARGS)
    for key in v1:  # version 1's outputs: the same bits with or without views
        np.testing.assert_array_equal(gpu[key], v1[key])


def test_cuda_crop_views_4k_device_frames_out_and_stream():
    torch = pytest.importorskip("torch")
    frames = _frames("NV12", hw=(2160, 3840))
    cpu = P.preprocess(frames, "NV12", 224, 224, dtype="float16", views=VIEWS, **ARGS)
    stream = torch.cuda.Stream()
    shapes = {
        "image": (2, 3, 224, 224),
        "gradient": (2, 1, 224, 224),
        "prior": (2, 1, 56, 56),
        "crops": (2, 4, 3, 96, 96),
        "crop_gradient": (2, 4, 1, 96, 96),
        "grid": (2, 3, 3, 64, 64),
    }
    with torch.cuda.stream(stream):
        dev = torch.from_numpy(frames).cuda()
        out = {k: torch.empty(s, dtype=torch.float16, device="cuda") for k, s in shapes.items()}
        out["crop_boxes"] = torch.empty((2, 4, 4), device="cuda")
        out["crop_weights"] = torch.empty((2, 4), device="cuda")
        out["grid_boxes"] = torch.empty((2, 3, 4), device="cuda")
    P.preprocess_cuda(
        dev, "NV12", 224, 224, dtype="float16", stream=stream, out=out, views=VIEWS, **ARGS
    )
    stream.synchronize()
    got = {k: v.cpu().numpy() for k, v in out.items()}
    prior32 = P.preprocess_cuda(dev, "NV12", 224, 224, views=VIEWS, **ARGS)["prior"]
    _same_views(got, cpu, prior32, list(frames), "NV12", "float16")
    boxes = got["crop_boxes"].astype(np.float64)
    np.testing.assert_allclose(boxes[..., 2] - boxes[..., 0], 192 / 3840, rtol=1e-6)  # s = 0.5


def test_preprocessor_cuda_crop_views_equal_its_cpu_call():
    from saliq import Preprocessor
    from saliq.views import ViewConfig

    pre = Preprocessor(224, 224, ARGS["mean"], ARGS["std"], version=2, views=ViewConfig())
    frames = _frames("BGR", hw=(720, 1280))
    gpu, cpu = pre.cuda(frames), pre(list(frames))
    assert set(gpu) == set(cpu)
    np.testing.assert_array_equal(gpu["crop_boxes"], cpu["crop_boxes"])
    _same(gpu, {k: cpu[k] for k in ("image", "crops", "crop_gradient")}, "float32")


# Issue 13, bug 2: the producer's stream. A frame written on a non-blocking stream behind a
# long busy kernel, then preprocess_cuda(stream=None): the legacy default stream does not wait
# for non-blocking streams by itself, so without the recorded wait the kernels read the zeros
# the destination held before the copy.
SPIN_CYCLES = 400_000_000  # ~0.2 s at 2 GHz, ~0.3 s at a Jetson Orin's 1.3 GHz
SPIN_SOURCE = r"""
extern "C" __global__ void spin(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}
"""


def test_cuda_waits_for_a_cupy_producer_stream():
    cp = pytest.importorskip("cupy")
    frames = _frames("BGR", hw=(1080, 1920))
    cpu = P.preprocess(frames, "BGR", 384, 512, **ARGS)
    src = cp.asarray(frames)
    dst = cp.zeros_like(src)
    cp.cuda.Device().synchronize()
    spin = cp.RawKernel(SPIN_SOURCE, "spin")
    producer = cp.cuda.Stream(non_blocking=True)
    with producer:  # CuPy's __cuda_array_interface__ names the current stream: this one
        spin((1,), (1,), (cp.int64(SPIN_CYCLES),))
        dst[...] = src
        gpu = P.preprocess_cuda(dst, "BGR", 384, 512, stream=None, **ARGS)
    _same(gpu, cpu, "float32")


def test_cuda_waits_for_a_torch_producer_stream():
    """PyTorch's interface (version 2) names no stream: the tensor is read through DLPack,
    whose handshake orders torch's current stream before ours."""
    torch = pytest.importorskip("torch")
    frames = _frames("BGR", hw=(1080, 1920))
    cpu = P.preprocess(frames, "BGR", 384, 512, **ARGS)
    src = torch.from_numpy(frames).cuda()
    dst = torch.zeros_like(src)
    torch.cuda.synchronize()
    producer = torch.cuda.Stream()  # torch's side streams are non-blocking
    with torch.cuda.stream(producer):
        torch.cuda._sleep(SPIN_CYCLES)
        dst.copy_(src)
        gpu = P.preprocess_cuda(dst, "BGR", 384, 512, stream=None, **ARGS)
    _same(gpu, cpu, "float32")


# Issue 13, bug 5: the scratch allocator, one fresh process per setting (it is chosen once per
# device and process). After a large call and a device sync (where a pool with release
# threshold 0 hands its free memory back), the default pool still holds the call's scratch
# (a 4K frame -> 1024x1024: about 80 MB); threshold 0 and cudaMalloc/cudaFree hold none. Every
# setting gives the same bits.
ALLOC_PROBE = r"""
import hashlib, json
import numpy as np
import torch
from saliq import _preproc as P

P.preprocess_cuda(np.zeros((1, 64, 64, 3), np.uint8), "BGR", 32, 32)  # kernels, allocator
torch.cuda.synchronize()
free0 = torch.cuda.mem_get_info()[0]
big = np.random.default_rng(0).integers(0, 256, (1, 2160, 3840, 3), dtype=np.uint8)
out = P.preprocess_cuda(big, "BGR", 1024, 1024)
torch.cuda.synchronize()
free1 = torch.cuda.mem_get_info()[0]
digest = hashlib.sha256(b"".join(out[k].tobytes() for k in sorted(out))).hexdigest()
print(json.dumps({"retained_mib": (free0 - free1) / 2**20, "sha256": digest}))
"""
ALLOC_SETTINGS = {
    "default": {},
    "keep0": {"SALIQ_CUDA_POOL_KEEP_MB": "0"},
    "no_pools": {"SALIQ_CUDA_MEMPOOL": "0"},
}


@pytest.fixture(scope="module")
def alloc_runs() -> dict:
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("torch")
    runs = {}
    for name, env in ALLOC_SETTINGS.items():
        run = subprocess.run(
            [sys.executable, "-c", ALLOC_PROBE],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, f"{name}: {run.stderr[-3000:]}"
        runs[name] = json.loads(run.stdout.strip().splitlines()[-1])
    return runs


def test_cuda_memory_pool_keeps_its_scratch_across_syncs(alloc_runs):
    assert alloc_runs["default"]["retained_mib"] >= 32, alloc_runs
    assert alloc_runs["keep0"]["retained_mib"] <= 8, alloc_runs


def test_cuda_without_memory_pools_gives_the_same_bits(alloc_runs):
    assert alloc_runs["no_pools"]["retained_mib"] <= 8, alloc_runs
    assert alloc_runs["no_pools"]["sha256"] == alloc_runs["default"]["sha256"]
    assert alloc_runs["keep0"]["sha256"] == alloc_runs["default"]["sha256"]
