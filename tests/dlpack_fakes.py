"""DLPack exporters for tests: a wrapper hiding every other protocol, and a made-up capsule.

The CUDA one never touches its pointer, so the parsing, stream handshake and refusals of
``saliq.dlpack`` can be tested on machines without a GPU.
"""

from __future__ import annotations

import ctypes

from saliq.dlpack import _DLDataType, _DLDevice, _DLManagedTensor, _DLTensor

_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class DLPackOnly:
    """Shows a tensor only through DLPack: not an ndarray, no ``__cuda_array_interface__``."""

    def __init__(self, tensor) -> None:
        self._tensor = tensor

    def __dlpack__(self, **kwargs):
        return self._tensor.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._tensor.__dlpack_device__()


class FakeDLPack:
    """A DLPack exporter of memory at a made-up address on any device type."""

    def __init__(
        self,
        ptr: int,
        shape: tuple[int, ...],
        strides: tuple[int, ...] | None = None,  # elements, as DLPack counts them
        dtype: tuple[int, int, int] = (1, 8, 1),  # (code, bits, lanes): uint8
        device_type: int = 2,  # kDLCUDA
        byte_offset: int = 0,
        capsule_name: bytes = b"dltensor",
        log: list | None = None,  # e.g. HostCudaImpl.calls, to see the handshake's place in order
    ) -> None:
        self.ptr, self.shape, self.strides = ptr, shape, strides
        self.dtype, self.device_type, self.byte_offset = dtype, device_type, byte_offset
        self.capsule_name = capsule_name
        self.streams_asked: list[object] = []
        self.log = log
        self._alive: list[object] = []  # ctypes storage the capsules point into

    def __dlpack_device__(self):
        return (self.device_type, 0)

    def __dlpack__(self, stream=None):
        self.streams_asked.append(stream)
        if self.log is not None:
            self.log.append(("dlpack", stream))
        ndim = len(self.shape)
        shape = (ctypes.c_int64 * ndim)(*self.shape)
        strides = (ctypes.c_int64 * ndim)(*self.strides) if self.strides is not None else None
        tensor = _DLTensor(
            data=self.ptr,
            device=_DLDevice(self.device_type, 0),
            ndim=ndim,
            dtype=_DLDataType(*self.dtype),
            shape=ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)),
            strides=ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64)) if strides else None,
            byte_offset=self.byte_offset,
        )
        managed = _DLManagedTensor(dl_tensor=tensor, manager_ctx=None, deleter=None)
        name = ctypes.create_string_buffer(self.capsule_name)
        self._alive += [shape, strides, managed, name]
        return _new_capsule(ctypes.addressof(managed), name, None)


class CaiAndDLPack(FakeDLPack):
    """What a PyTorch CUDA tensor offers: DLPack and a version-2 interface with no stream key."""

    def __init__(self, ptr: int, shape: tuple[int, ...], **kwargs) -> None:
        super().__init__(ptr, shape, dtype=(2, 32, 1), **kwargs)  # float32
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": "<f4",
            "data": (ptr, False),
            "version": 2,
            "strides": None,
        }
