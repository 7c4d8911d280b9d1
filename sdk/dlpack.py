"""DLPack in, without copies: host tensors become numpy arrays, CUDA tensors gain a
``__cuda_array_interface__``.

saliq's native code and memory layer speak two dialects: numpy arrays on the host and
``__cuda_array_interface__`` (CAI) on the device. Frameworks that export only DLPack (JAX,
TensorFlow, PaddlePaddle, or a torch CPU tensor) are translated here, in one place, so
``saliq._preproc`` and :func:`saliq.cuda_memory.device_array_view` both accept them.

The capsule is read, not consumed: it keeps its ``"dltensor"`` name, so its producer's
destructor releases the tensor when the :class:`DLPackDeviceArray` holding it is collected.
Hold the wrapper (or the source tensor) for as long as queued GPU work reads the memory.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

# DLDeviceType values (dlpack.h); the DLPack spec fixes these numbers.
DL_CPU, DL_CUDA, DL_CUDA_HOST, DL_CUDA_MANAGED = 1, 2, 3, 13
_DEVICE_NAMES = {
    DL_CPU: "CPU",
    DL_CUDA: "CUDA",
    DL_CUDA_HOST: "CUDA pinned host",
    4: "OpenCL",
    7: "Vulkan",
    8: "Metal",
    10: "ROCm",
    DL_CUDA_MANAGED: "CUDA managed",
}
# DLDataTypeCode -> the CAI/numpy typestr kind letter.
_TYPE_KINDS = {0: "i", 1: "u", 2: "f", 6: "b"}
# The DLPack `stream` value for CUDA's legacy default stream (0 is forbidden by the protocol).
LEGACY_DEFAULT_STREAM = 1
_CAPSULE_NAME = b"dltensor"


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),  # in elements; NULL = C-contiguous
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", _DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


@functools.cache
def _capsule_api() -> tuple[Any, Any]:
    """PyCapsule_IsValid and PyCapsule_GetPointer, typed once per process."""
    api = ctypes.pythonapi
    api.PyCapsule_IsValid.restype = ctypes.c_int
    api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_IsValid, api.PyCapsule_GetPointer


def is_dlpack(obj: Any) -> bool:
    """True for objects exporting DLPack (``__dlpack__`` and ``__dlpack_device__``)."""
    return hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__")


def dlpack_device(obj: Any) -> tuple[int, int]:
    """(DLDeviceType, device id) of a DLPack exporter."""
    device_type, device_id = obj.__dlpack_device__()
    return int(device_type), int(device_id)


def device_name(device_type: int) -> str:
    return _DEVICE_NAMES.get(device_type, f"DLPack device type {device_type}")


class DLPackDeviceArray:
    """A CUDA DLPack tensor seen through ``__cuda_array_interface__`` (v3), zero-copy.

    ``stream`` in the interface is None: the exporter was already asked to order its work
    before the consumer's stream (the DLPack ``stream=`` handshake), so no further wait is due.
    """

    def __init__(self, capsule: Any, source: Any) -> None:
        is_valid, get_pointer = _capsule_api()
        if not is_valid(capsule, _CAPSULE_NAME):
            raise TypeError(
                f"{type(source).__name__}.__dlpack__() did not return an unused 'dltensor' "
                "capsule; pass a fresh tensor (each DLPack capsule can be read once)"
            )
        managed = _DLManagedTensor.from_address(get_pointer(capsule, _CAPSULE_NAME))
        tensor = managed.dl_tensor
        self._capsule, self._source = capsule, source  # keep the memory alive
        self.device_type, self.device_id = tensor.device.device_type, tensor.device.device_id
        dtype = tensor.dtype
        if dtype.lanes != 1 or dtype.code not in _TYPE_KINDS or dtype.bits % 8:
            raise TypeError(
                f"unsupported DLPack dtype (code {dtype.code}, {dtype.bits} bits, {dtype.lanes} "
                "lanes); pass uint8/uint16 frames or float16/float32 tensors"
            )
        itemsize = dtype.bits // 8
        kind = "b" if dtype.code == 6 else _TYPE_KINDS[dtype.code]
        self.typestr = ("|" if itemsize == 1 else "<") + kind + str(itemsize)
        ndim = tensor.ndim
        self.shape = tuple(int(tensor.shape[i]) for i in range(ndim))
        self.strides = (
            tuple(int(tensor.strides[i]) * itemsize for i in range(ndim))
            if tensor.strides
            else None
        )
        self.ptr = int(tensor.data or 0) + int(tensor.byte_offset)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {
            "version": 3,
            "shape": self.shape,
            "typestr": self.typestr,
            "data": (self.ptr, False),
            "strides": self.strides,
            "stream": None,
        }


def adapt(obj: Any, stream: int | None = None, allow_device: bool = True) -> Any:
    """A DLPack exporter as a numpy array (host memory) or a :class:`DLPackDeviceArray`.

    ``stream``: the CUDA stream (int handle) the caller's work will run on; the exporter makes
    its pending writes visible to it. None means the legacy default stream.
    """
    device_type, _ = dlpack_device(obj)
    if device_type == DL_CPU:
        try:
            return np.from_dlpack(obj)
        except (TypeError, RuntimeError, BufferError) as exc:
            raise TypeError(f"cannot read {type(obj).__name__} through DLPack: {exc}") from None
    if device_type != DL_CUDA:
        raise TypeError(
            f"{type(obj).__name__} lives on {device_name(device_type)} memory; saliq reads host "
            "(CPU) and CUDA device tensors: move it to one of those first"
        )
    if not allow_device:
        raise TypeError(
            f"{type(obj).__name__} is in GPU memory (DLPack CUDA); use preprocess_cuda() or "
            "copy it to the host first"
        )
    # 0 is ambiguous in the protocol (legacy vs per-thread default), so it means "legacy" here.
    consumer = LEGACY_DEFAULT_STREAM if not stream else int(stream)
    try:
        capsule = obj.__dlpack__(stream=consumer)
    except (TypeError, RuntimeError, BufferError) as exc:
        raise TypeError(f"cannot read {type(obj).__name__} through DLPack: {exc}") from None
    return DLPackDeviceArray(capsule, obj)
