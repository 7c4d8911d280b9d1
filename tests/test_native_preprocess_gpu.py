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
