"""Reads a DLPack capsule with ctypes: pointer, device, dtype, shape, strides, read-only flag.

herd never consumes the capsule (it never renames it to "used_dltensor"): holding the capsule
keeps the producer's memory alive, and the capsule's own destructor calls the producer's deleter
when herd lets go of it. That is how a handle keeps a DLPack tensor alive until it completes.
"""

import ctypes

# DLDeviceType values (dlpack.h).
KDL_CPU = 1
KDL_CUDA = 2
KDL_CUDA_HOST = 3
KDL_CUDA_MANAGED = 13

# DLDataTypeCode values (dlpack.h).
KDL_INT = 0
KDL_UINT = 1
KDL_FLOAT = 2
KDL_BFLOAT = 4

_FLAG_READ_ONLY = 1 << 0


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
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", _DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


class _DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class _DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", _DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", _DLTensor),
    ]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_get_pointer.restype = ctypes.c_void_p
_get_name = ctypes.pythonapi.PyCapsule_GetName
_get_name.argtypes = [ctypes.py_object]
_get_name.restype = ctypes.c_char_p


class Tensor:
    """What herd needs from a DLPack tensor; `capsule` must be kept alive while ptr is used."""

    __slots__ = (
        "capsule", "ptr", "device_type", "device_id", "code", "bits", "lanes", "shape",
        "strides", "readonly",
    )


def device_of(obj):
    """(device_type, device_id) from obj.__dlpack_device__()."""
    dev = obj.__dlpack_device__()
    return int(dev[0]), int(dev[1])


def export(obj, stream=None):
    """Calls obj.__dlpack__() (asking for the versioned form first, which carries a read-only
    flag) and reads the capsule. `stream` (CUDA: 1 the legacy default stream, 2 the per-thread
    one, else a cudaStream_t as an int) is the stream the consumer will use the data on: the
    producer orders it after its pending writes. None asks for no ordering (host memory)."""
    kw = {} if stream is None else {"stream": stream}
    try:
        capsule = obj.__dlpack__(max_version=(1, 0), **kw)
    except TypeError:
        capsule = obj.__dlpack__(**kw)
    name = _get_name(capsule)
    if name == b"dltensor_versioned":
        managed = _DLManagedTensorVersioned.from_address(_get_pointer(capsule, name))
        readonly = bool(managed.flags & _FLAG_READ_ONLY)
    elif name == b"dltensor":
        managed = _DLManagedTensor.from_address(_get_pointer(capsule, name))
        readonly = False
    else:
        raise ValueError(f"__dlpack__() returned a capsule named {name!r}, not a DLPack tensor")
    dl = managed.dl_tensor
    t = Tensor()
    t.capsule = capsule
    t.ptr = (dl.data or 0) + dl.byte_offset
    t.device_type = dl.device.device_type
    t.device_id = dl.device.device_id
    t.code = dl.dtype.code
    t.bits = dl.dtype.bits
    t.lanes = dl.dtype.lanes
    t.shape = tuple(dl.shape[i] for i in range(dl.ndim))
    t.strides = None if not dl.strides else tuple(dl.strides[i] for i in range(dl.ndim))
    t.readonly = readonly
    return t
