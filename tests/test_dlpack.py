"""DLPack inputs: host tensors through the CPU twin, CUDA capsules parsed without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from saliq import cuda_memory as cm
from saliq import dlpack

from .conftest import require
from .dlpack_fakes import DLPackOnly, FakeDLPack

P = require("saliq._preproc", reason="the native extension is not built")
torch = pytest.importorskip("torch")

ARGS = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _frames(n=2, h=45, w=61, c=3, dtype=np.uint8):
    hi = 65536 if dtype == np.uint16 else 256
    return np.random.default_rng(7).integers(0, hi, (n, h, w, c)).astype(dtype)


def _equal(got: dict, want: dict) -> None:
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# ---- host DLPack through the CPU twin --------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_torch_cpu_tensors_are_read_like_numpy(dtype):
    frames = _frames(dtype=dtype)
    want = P.preprocess(frames, "BGR", 32, 48, **ARGS)
    batch = torch.from_numpy(frames)
    _equal(P.preprocess(batch, "BGR", 32, 48, **ARGS), want)
    _equal(P.preprocess([batch[0], batch[1]], "BGR", 32, 48, **ARGS), want)
    _equal(P.preprocess([DLPackOnly(f) for f in frames], "BGR", 32, 48, **ARGS), want)


def test_dlpack_crop_of_a_padded_buffer_needs_pitch():
    padded = torch.from_numpy(_frames(n=1, h=40, w=80)[0])
    crop = padded[:, :64]  # rows 80*3 bytes apart, 64*3 bytes used
    want = P.preprocess([np.ascontiguousarray(crop.numpy())], "RGB", 32, 32, **ARGS)
    with pytest.raises(ValueError, match="pitch=240"):
        P.preprocess([crop], "RGB", 32, 32, **ARGS)
    _equal(P.preprocess([crop], "RGB", 32, 32, pitch=240, **ARGS), want)


def test_dlpack_bad_inputs_name_the_problem():
    with pytest.raises(TypeError, match="float32.*uint8 or uint16"):
        P.preprocess([torch.zeros(8, 8, 3)], "RGB", 32, 32)
    with pytest.raises(TypeError, match="GPU memory.*preprocess_cuda"):
        P.preprocess([FakeDLPack(0x1000, (8, 8, 3))], "RGB", 32, 32)
    with pytest.raises(TypeError, match="OpenCL"):
        P.preprocess([FakeDLPack(0x1000, (8, 8, 3), device_type=4)], "RGB", 32, 32)
    with pytest.raises(TypeError, match="numpy arrays.*DLPack tensors, got <class 'str'>"):
        P.preprocess(["frame.jpg"], "RGB", 32, 32)


# ---- CUDA capsules, parsed on any machine -----------------------------------------------------


def test_cuda_capsule_becomes_a_cuda_array_interface():
    fake = FakeDLPack(
        0x7F0000, (2, 4, 6, 3), strides=(216, 54, 9, 3), byte_offset=64, dtype=(1, 16, 1)
    )
    array = dlpack.adapt(fake, stream=0xABC)
    cai = array.__cuda_array_interface__
    assert cai["data"] == (0x7F0000 + 64, False)
    assert cai["shape"] == (2, 4, 6, 3)
    assert cai["typestr"] == "<u2"
    assert cai["strides"] == (432, 108, 18, 6)  # elements -> bytes
    assert cai["stream"] is None  # the handshake below already ordered the producer's work
    assert fake.streams_asked == [0xABC]
    dlpack.adapt(fake, stream=None)
    dlpack.adapt(fake, stream=0)
    assert fake.streams_asked[1:] == [dlpack.LEGACY_DEFAULT_STREAM] * 2
    contiguous = dlpack.adapt(FakeDLPack(8, (5,), dtype=(2, 32, 1)))
    assert contiguous.__cuda_array_interface__["strides"] is None
    assert contiguous.__cuda_array_interface__["typestr"] == "<f4"


def test_cuda_capsule_refusals():
    with pytest.raises(TypeError, match="lanes"):
        dlpack.adapt(FakeDLPack(8, (4,), dtype=(2, 32, 4)))
    with pytest.raises(TypeError, match="unused 'dltensor' capsule"):
        dlpack.adapt(FakeDLPack(8, (4,), capsule_name=b"used_dltensor"))
    with pytest.raises(TypeError, match="GPU memory"):
        dlpack.adapt(FakeDLPack(8, (4,)), allow_device=False)
    with pytest.raises(TypeError, match="ROCm"):
        dlpack.adapt(FakeDLPack(8, (4,), device_type=10))


def test_device_array_view_accepts_dlpack():
    fake = FakeDLPack(0x2000, (2, 3), dtype=(2, 16, 1), byte_offset=4)
    view = cm.device_array_view(fake, stream=77)
    assert (view.ptr, view.shape, view.dtype, view.stream) == (0x2004, (2, 3), np.float16, None)
    assert view.owner is not None and fake.streams_asked == [77]
    with pytest.raises(ValueError, match="not C-contiguous"):
        cm.device_array_view(FakeDLPack(8, (2, 3), strides=(1, 2)))
    with pytest.raises(TypeError, match="host memory"):
        cm.device_array_view(torch.zeros(3))
