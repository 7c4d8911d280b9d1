"""The Assessor's choice of preprocessing, in this process (no GPU, no TensorRT).

The GPU path itself (CUDA kernels writing a TensorRT engine's inputs) runs on the host
stand-ins in tests/test_cuda_emulation.py and on a GPU in the `gpu` tests.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import saliq
from saliq.assess import Assessor
from saliq.backends.onnxruntime import OnnxRuntimeBackend
from saliq.device_pipeline import DeviceTensor, unavailable_reason, written_outputs
from saliq.errors import BackendUnavailableError, InvalidImageError
from saliq.imageio import device_frame, is_device_frame
from saliq.spec import ModelSpec

from .fake_runtimes import tiny_onnx

SPEC = ModelSpec(name="tiny", architecture="test", backbone="none", input_height=32, input_width=32)
VIEWS = dict(detail_crops=3, crop_size=16, salient_crops=2, grid_crops=0, grid_size=16)


@pytest.fixture
def onnx_backend(tmp_path):
    backend = OnnxRuntimeBackend(tiny_onnx(tmp_path / "tiny.onnx", SPEC), threads=1)
    yield backend
    backend.close()


def _on_device(array: np.ndarray) -> DeviceTensor:
    return DeviceTensor(array.ctypes.data, array.shape, array.dtype)


def test_host_backends_preprocess_on_the_host_and_say_why(onnx_backend):
    assessor = Assessor(onnx_backend)
    assert assessor.preprocessing_used == "host" and assessor.device_pipeline is None
    assert assessor.preprocessing_note == "the onnxruntime backend takes host inputs"
    with pytest.raises(BackendUnavailableError, match="onnxruntime backend takes host inputs"):
        Assessor(onnx_backend, preprocessing="cuda")
    with pytest.raises(ValueError, match="auto, cuda, host"):
        Assessor(onnx_backend, preprocessing="gpu")
    assert Assessor(onnx_backend, preprocessing="host").preprocessing_note.endswith("asked")


def test_device_frames_without_the_gpu_path_name_the_reason_and_the_fix(onnx_backend):
    frame = np.zeros((40, 50, 3), np.uint8)
    with pytest.raises(InvalidImageError) as caught:
        Assessor(onnx_backend).assess([frame, _on_device(frame)])
    message = str(caught.value)
    assert message.startswith("array[1] is in GPU memory")
    assert "onnxruntime backend takes host inputs" in message and ".cpu().numpy()" in message


def test_device_frames_are_recognised_and_their_format_read_from_the_shape():
    frame = np.zeros((40, 50, 4), np.uint8)
    assert is_device_frame(_on_device(frame)) and not is_device_frame(frame)
    assert not is_device_frame("photo.jpg")
    assert device_frame(_on_device(frame), "RGB", "x")[1] == "RGBA"
    assert device_frame(_on_device(frame[:, :, 0].copy()), "BGR", "x")[1] == "GRAY"
    with pytest.raises(InvalidImageError, match="GPU frames must be HxW"):
        device_frame(_on_device(np.zeros((40, 50, 2), np.uint8)), "BGR", "x")
    with pytest.raises(InvalidImageError, match="image is 5x40 pixels, too small"):
        device_frame(_on_device(np.zeros((40, 5, 3), np.uint8)), "BGR", "x")


def test_written_outputs_are_every_buffer_the_kernels_fill():
    whole = {"image": (3, 32, 32), "gradient": (1, 32, 32), "prior": (1, 8, 8)}
    assert written_outputs(SPEC) == whole
    v2 = ModelSpec(
        name="v2", architecture="test", backbone="none", input_height=32, input_width=32,
        preprocessing_version=2, view_config=VIEWS,
    )  # fmt: skip
    shapes = written_outputs(v2)
    assert shapes["crops"] == (3, 3, 16, 16) and shapes["crop_weights"] == (3,)
    assert "grid" not in shapes and "grid_boxes" not in shapes  # grid_crops=0: not written
    with_grid = ModelSpec(**{**v2.__dict__, "view_config": {**VIEWS, "grid_crops": 2}})
    assert written_outputs(with_grid)["grid_boxes"] == (2, 4)


def test_unavailable_reason_needs_device_inputs_and_native_cuda():
    no_device = types.SimpleNamespace(name="torch", spec=SPEC)
    assert unavailable_reason(no_device) == "the torch backend takes host inputs"
    with_device = types.SimpleNamespace(name="tensorrt", spec=SPEC, infer_device=lambda **k: 0)
    native = saliq.preprocess.native_module()
    reason = unavailable_reason(with_device)
    if native is None:
        assert reason == "saliq._preproc is not built"
    else:  # the module's own words ("" where CUDA works here)
        assert reason == native.cuda_unavailable_reason()


def test_load_passes_the_preprocessing_choice_and_closes_what_it_opened(tmp_path, monkeypatch):
    path = tiny_onnx(tmp_path / "tiny.onnx", SPEC)
    opened = []
    real = saliq.assess.load_backend

    def recording(*args, **kwargs):
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(saliq.assess, "load_backend", recording)
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        saliq.load(path, preprocessing="gpu")
    assert opened == []  # refused before a model was opened
    with pytest.raises(BackendUnavailableError, match="GPU preprocessing unavailable"):
        saliq.load(path, preprocessing="cuda")
    assert opened[-1].closed  # not left open by the failed construction
    with saliq.load(path, preprocessing="host") as assessor:
        assert assessor.preprocessing_used == "host"
        assessor.release_thread()  # nothing to release on a host backend; no error
        assert assessor.assess(np.zeros((40, 40, 3), np.uint8)).score > 0


def test_gpu_frames_are_checked_before_they_reach_a_kernel():
    """Dtype and layout from the interface, with the fix in the message; the GPU from DLPack."""
    from saliq.device_pipeline import check_frame_device

    with pytest.raises(InvalidImageError, match=r"uint8 or uint16 pixels, got float32.*to\(torch"):
        device_frame(_on_device(np.zeros((40, 50, 3), np.float32)), "BGR", "array[0]")
    hwc = np.zeros((3, 40, 50), np.uint8).transpose(1, 2, 0)  # a permuted CHW tensor
    view = DeviceTensor(hwc.ctypes.data, hwc.shape, hwc.dtype)

    class Strided:
        __cuda_array_interface__ = {**view.__cuda_array_interface__, "strides": hwc.strides}
        shape = hwc.shape

    with pytest.raises(InvalidImageError, match=r"not C-contiguous.*tensor.contiguous\(\)"):
        device_frame(Strided(), "BGR", "array[0]")
    contiguous = _on_device(np.zeros((40, 50, 3), np.uint8))
    assert device_frame(contiguous, "BGR", "array[0]")[1] == "BGR"

    class OnGpu1:
        def __dlpack_device__(self):
            return (2, 1)

    with pytest.raises(InvalidImageError, match="on cuda:1 but the engine runs on cuda:0"):
        check_frame_device(OnGpu1(), 0, "array[2]")
    check_frame_device(OnGpu1(), 1, "array[2]")  # the engine's GPU: fine
    check_frame_device(contiguous, 0, "array[0]")  # the interface alone does not say: taken


def test_the_exposure_check_refuses_gpu_frames_with_the_way_out():
    from saliq.gate import measure_exposure

    with pytest.raises(InvalidImageError, match=r"GPU memory.*GatePolicy\(exposure=None\)"):
        measure_exposure(_on_device(np.zeros((40, 50, 3), np.uint8)))
