"""Turns what a user passes (numpy arrays, buffer-protocol objects, __array_interface__,
__cuda_array_interface__, DLPack) into the (pointer, count, dtype, device) herd's C API takes.

Dispatch, first match wins:
  numpy.ndarray                  host, used as it is
  __cuda_array_interface__       device memory (cupy, numba, torch CUDA tensors)
  __array_interface__            host, viewed through numpy without a copy
  __dlpack__/__dlpack_device__   host (kDLCPU, kDLCUDAHost) or device (kDLCUDA, kDLCUDAManaged)
  buffer protocol                host (bytearray, array.array, memoryview, mmap...)

Host memory ends up as a numpy view (Buffer.array) over the caller's memory; device memory only
as a pointer, a device ordinal and a dtype, which herd's C API takes as it is: a build without
GPU support refuses a device >= 0 with HERD_ERR_NOT_SUPPORTED. Nothing is ever copied: a buffer
that cannot be used in place (not C-contiguous, misaligned, read-only where herd writes) is an
InvalidArgumentError that says what to do instead.
"""

import ctypes
import sys

import numpy as np

from . import _capi, _dlpack
from .errors import invalid_argument, make

DTYPES = {
    "uint8": _capi.UINT8,
    "int8": _capi.INT8,
    "int32": _capi.INT32,
    "int64": _capi.INT64,
    "float16": _capi.FLOAT16,
    "bfloat16": _capi.BFLOAT16,
    "float32": _capi.FLOAT32,
    "float64": _capi.FLOAT64,
}
DTYPE_NAMES = {code: name for name, code in DTYPES.items()}
ITEMSIZE = {
    _capi.UINT8: 1, _capi.INT8: 1, _capi.INT32: 4, _capi.INT64: 8,
    _capi.FLOAT16: 2, _capi.BFLOAT16: 2, _capi.FLOAT32: 4, _capi.FLOAT64: 8,
}

# numpy (kind, itemsize) -> herd dtype. bfloat16 has no numpy dtype of its own; ml_dtypes'
# is recognised by name below.
_NUMPY = {
    ("u", 1): _capi.UINT8,
    ("i", 1): _capi.INT8,
    ("i", 4): _capi.INT32,
    ("i", 8): _capi.INT64,
    ("f", 2): _capi.FLOAT16,
    ("f", 4): _capi.FLOAT32,
    ("f", 8): _capi.FLOAT64,
}

# DLPack (type code, bits) -> herd dtype.
_DLPACK = {
    (_dlpack.KDL_UINT, 8): _capi.UINT8,
    (_dlpack.KDL_INT, 8): _capi.INT8,
    (_dlpack.KDL_INT, 32): _capi.INT32,
    (_dlpack.KDL_INT, 64): _capi.INT64,
    (_dlpack.KDL_FLOAT, 16): _capi.FLOAT16,
    (_dlpack.KDL_BFLOAT, 16): _capi.BFLOAT16,
    (_dlpack.KDL_FLOAT, 32): _capi.FLOAT32,
    (_dlpack.KDL_FLOAT, 64): _capi.FLOAT64,
}

_HINT = (
    "herd reduces uint8 int8 int32 int64 float16 bfloat16 float32 float64; for bfloat16 bits "
    "held in a 2-byte buffer (e.g. numpy uint16) pass dtype='bfloat16'"
)


def _storage_dtype(code):
    """The numpy dtype that holds `code` on the host (bfloat16: ml_dtypes if present, else
    its bits as uint16)."""
    if code == _capi.BFLOAT16:
        try:
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        except ImportError:
            return np.dtype(np.uint16)
    return np.dtype(DTYPE_NAMES[code])


def _numpy_code(npd):
    if npd.name == "bfloat16" and npd.itemsize == 2:
        return _capi.BFLOAT16
    if not npd.isnative:
        return None
    return _NUMPY.get((npd.kind, npd.itemsize))


_numpy_codes = {}  # numpy dtype -> herd dtype or None: dtype.name costs microseconds per call


def numpy_code(npd):
    """herd dtype of a numpy dtype, or None."""
    try:
        return _numpy_codes[npd]
    except KeyError:
        code = _numpy_codes[npd] = _numpy_code(npd)
        return code


def parse_dtype(dtype):
    """A herd dtype code from a name ("bfloat16"), a code (herd.FLOAT32) or a numpy dtype."""
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    if isinstance(dtype, int) and not isinstance(dtype, bool):
        if dtype in DTYPE_NAMES:
            return dtype
        raise invalid_argument(f"unknown herd dtype code {dtype}; {_HINT}")
    try:
        npd = np.dtype(dtype)
    except TypeError:
        raise invalid_argument(f"unknown dtype {dtype!r}; {_HINT}") from None
    code = numpy_code(npd)
    if code is None:
        raise invalid_argument(f"dtype {npd} is not a herd dtype; {_HINT}")
    return code


class Buffer:
    """One resolved buffer. `keep` holds whatever must stay alive while herd uses `ptr`."""

    __slots__ = ("obj", "ptr", "count", "dtype", "device", "readonly", "array", "keep",
                 "stream")

    def __init__(self):
        self.stream = None  # GPU only: the producer's cudaStream_t as an int (None: default)

    @property
    def nbytes(self):
        return self.count * ITEMSIZE[self.dtype]


def _c_contiguous(shape, strides, itemsize):
    """True when `strides` (bytes) are C order for `shape`; dims of extent 1 may have any."""
    expect = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expect:
            return False
        expect *= n
    return True


def _code_for(native_code, native_desc, itemsize, dtype, what):
    if dtype is None:
        if native_code is None:
            raise invalid_argument(f"{what} has dtype {str(native_desc)}, which herd does not "
                                   f"reduce; {_HINT}")
        return native_code
    code = parse_dtype(dtype)
    if ITEMSIZE[code] != itemsize:
        raise invalid_argument(
            f"{what}: dtype={DTYPE_NAMES[code]!r} needs {ITEMSIZE[code]}-byte elements, but the "
            f"buffer holds {native_desc} ({itemsize}-byte elements)"
        )
    return code


class _ArrayInterface(ctypes.Structure):
    """numpy's PyArrayInterface, behind ndarray.__array_struct__ (a stable, documented ABI)."""

    _fields_ = [("two", ctypes.c_int), ("nd", ctypes.c_int), ("typekind", ctypes.c_char),
                ("itemsize", ctypes.c_int), ("flags", ctypes.c_int),
                ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("data", ctypes.c_void_p)]


def _slow_data_ptr(arr):
    return arr.__array_interface__["data"][0]


def _data_ptr_candidates():
    """Ways to read an ndarray's data address, fastest first. __array_interface__ builds a dict
    on every call (microseconds, on the latency path of every small reduction)."""
    at = ctypes.c_void_p.from_address
    # CPython: id() is the object's address, and numpy's PyArrayObject starts with the object
    # header and then `char *data` (ndarraytypes.h, the same in numpy 1.x and 2.x): one load.
    field = object.__basicsize__

    def header(arr):
        return at(id(arr) + field).value or 0

    if sys.implementation.name == "cpython":  # elsewhere id() is no address to read at
        yield header
    # The capsule behind __array_struct__ (numpy's documented PyArrayInterface) holds it too.
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    offset = _ArrayInterface.data.offset

    def capsule(arr):
        return at(get(arr.__array_struct__, None) + offset).value or 0

    yield capsule


def _make_data_ptr():
    """The address of an ndarray's first element: the fastest way that agrees with
    __array_interface__ on every probe (views at an offset, empty, 0-d, read-only, strided,
    big and small); any doubt falls back to the documented dict."""
    base = np.arange(1 << 16, dtype=np.float64)
    ro = np.arange(4, dtype=np.int8)
    ro.flags.writeable = False
    probes = [base, base[3:], base[::2], base[5:6], np.empty(0), np.empty((0, 3))[:, 1:],
              np.array(2.5), ro[1:], np.arange(7, dtype=np.float32).reshape(7, 1)[2:].T]
    try:
        for fn in _data_ptr_candidates():
            if all(fn(p) == _slow_data_ptr(p) for p in probes):
                return fn
    except Exception:  # noqa: BLE001 - an unusual Python or numpy: use the documented dict
        pass
    return _slow_data_ptr


data_ptr = _make_data_ptr()


def _from_ndarray(arr, obj, dtype, what, keep):
    npd = arr.dtype
    code = _numpy_codes.get(npd) if dtype is None else None
    if code is None:  # a dtype override, one not seen yet, or one herd does not reduce
        code = _code_for(numpy_code(npd), npd, npd.itemsize, dtype, what)
    flags = arr.flags
    if not flags.c_contiguous:
        raise invalid_argument(
            f"{what} is not C-contiguous (shape {arr.shape}, strides {arr.strides}); herd works "
            f"in place, so pass numpy.ascontiguousarray(x) and use that array"
        )
    if not flags.aligned:
        raise invalid_argument(f"{what} is not aligned for {DTYPE_NAMES[code]}")
    b = Buffer()
    b.obj = obj
    b.ptr = data_ptr(arr)
    b.count = arr.size
    b.dtype = code
    b.device = _capi.DEVICE_CPU
    b.readonly = not flags.writeable
    b.array = arr
    b.keep = keep + (arr,) if keep else (arr,)
    return b


def _framework_code(obj):
    """herd dtype from the object's own `dtype` (torch.bfloat16, a numpy dtype...), or None when
    it has none herd knows. Preferred to __cuda_array_interface__'s typestr, which cannot say
    bfloat16: torch 2.5 writes "<f2" for it (float16: wrong results), newer torch "<V2"."""
    dt = getattr(obj, "dtype", None)
    if dt is None:
        return None
    if isinstance(dt, np.dtype):
        return numpy_code(dt)
    name = str(dt).rsplit(".", 1)[-1].lower()  # "torch.bfloat16" -> "bfloat16"
    return DTYPES.get(name)


def _framework_of(obj):
    return type(obj).__module__.split(".")[0]


def _current_stream(obj):
    """The framework's current CUDA stream for obj's device, as an int (None: the legacy default
    stream), which is what herd orders its reads after."""
    top = _framework_of(obj)
    try:
        if top == "torch":
            import torch  # noqa: PLC0415 - only when a torch tensor is passed

            return torch.cuda.current_stream(obj.device).cuda_stream or None
        if top == "cupy":
            import cupy  # noqa: PLC0415 - only when a cupy array is passed

            return cupy.cuda.get_current_stream().ptr or None
    except Exception:  # no usable CUDA in the framework: the legacy default stream
        return None
    return None


def _cuda_ordinal(obj):
    """The CUDA device of an object exposing __cuda_array_interface__ (which does not say)."""
    if hasattr(obj, "__dlpack_device__"):
        try:
            return _dlpack.device_of(obj)[1]
        except Exception:  # a producer may refuse; fall back to its device attribute
            pass
    dev = getattr(obj, "device", None)
    for attr in ("index", "id"):  # torch.device.index, cupy.cuda.Device.id
        v = getattr(dev, attr, None)
        if isinstance(v, int):
            return v
    if isinstance(dev, int):
        return dev
    # The GPU support will ask the driver (cudaPointerGetAttributes) instead of assuming 0.
    return 0


def _from_cuda_array_interface(obj, cai, dtype, what):
    ptr, readonly = cai["data"]
    shape = tuple(int(n) for n in cai["shape"])
    npd = np.dtype(cai["typestr"])
    if cai.get("mask") is not None:
        raise invalid_argument(f"{what}: masked arrays are not supported")
    strides = cai.get("strides")
    if strides is not None and not _c_contiguous(shape, strides, npd.itemsize):
        raise invalid_argument(f"{what} is not C-contiguous (shape {shape}, strides {strides})")
    native = _framework_code(obj)
    if native is not None and ITEMSIZE[native] != npd.itemsize:
        native = None  # the object's dtype does not describe this memory: trust the typestr
    if native is None:
        native = numpy_code(npd)
    b = Buffer()
    # herd orders its work after the producer's stream (protocol v3 "stream"; 1 and 2 are CUDA's
    # legacy and per-thread default streams, which the runtime accepts as handles). torch does
    # not say, so ask it for its current stream.
    b.stream = cai.get("stream")
    if b.stream is None:
        b.stream = _current_stream(obj)
    b.obj = obj
    b.ptr = int(ptr or 0)
    b.count = 1
    for n in shape:
        b.count *= n
    b.dtype = _code_for(native, str(npd), npd.itemsize, dtype, what)
    b.device = _cuda_ordinal(obj)
    b.readonly = bool(readonly)
    b.array = None
    b.keep = (obj,)
    return b


_DLPACK_HOST = (_dlpack.KDL_CPU, _dlpack.KDL_CUDA_HOST)
_DLPACK_CUDA = (_dlpack.KDL_CUDA, _dlpack.KDL_CUDA_MANAGED)


def _from_dlpack(obj, dtype, what):
    # Asked first, as the DLPack protocol wants: a CUDA producer is told the stream herd will
    # order its reads after (the framework's current stream, else the legacy default stream, 1),
    # and makes that stream wait for its pending writes. The capsule has the last word.
    dev_type, _ = _dlpack.device_of(obj)
    if dev_type not in _DLPACK_HOST + _DLPACK_CUDA:
        raise make(
            _capi.ERR_NOT_SUPPORTED,
            f"{what} lives on DLPack device type {dev_type}; herd takes host and CUDA memory")
    stream = _current_stream(obj) if dev_type in _DLPACK_CUDA else None
    try:
        t = _dlpack.export(obj, stream=None if dev_type not in _DLPACK_CUDA else (stream or 1))
    except BufferError as e:
        raise invalid_argument(f"{what}: __dlpack__() refused: {e}") from None
    if t.device_type not in _DLPACK_HOST + _DLPACK_CUDA:
        raise make(
            _capi.ERR_NOT_SUPPORTED,
            f"{what} lives on DLPack device type {t.device_type}; herd takes host and CUDA memory")
    if t.lanes != 1:
        raise invalid_argument(f"{what}: vector dtypes (DLPack lanes={t.lanes}) are not supported")
    native = _DLPACK.get((t.code, t.bits))
    itemsize = max(t.bits // 8, 1)
    code = _code_for(native, f"DLPack code {t.code} bits {t.bits}", itemsize, dtype, what)
    if t.strides is not None:
        byte_strides = tuple(s * itemsize for s in t.strides)
        if not _c_contiguous(t.shape, byte_strides, itemsize):
            raise invalid_argument(
                f"{what} is not C-contiguous (shape {t.shape}, element strides {t.strides})")
    count = 1
    for n in t.shape:
        count *= n
    if t.device_type in _DLPACK_HOST:
        # A numpy view over the producer's memory; the capsule in `keep` keeps it alive.
        storage = _storage_dtype(code)
        if storage.itemsize != itemsize:
            storage = np.dtype(f"u{itemsize}")
        if count:
            raw = (ctypes.c_char * (count * itemsize)).from_address(t.ptr)
            arr = np.frombuffer(raw, dtype=storage).reshape(t.shape)
        else:
            arr = np.empty(t.shape, dtype=storage)
        if t.readonly:
            arr.flags.writeable = False
        b = _from_ndarray(arr, obj, DTYPE_NAMES[code], what, (obj, t.capsule))
        b.ptr = t.ptr
        return b
    b = Buffer()
    b.stream = stream
    b.obj = obj
    b.ptr = t.ptr
    b.count = count
    b.dtype = code
    b.device = t.device_id
    b.readonly = t.readonly
    b.array = None
    b.keep = (obj, t.capsule)
    return b


def resolve(obj, dtype=None, what="array"):
    """A Buffer over `obj`'s memory. `dtype` overrides the element type (same element size).

    Scalars (numpy scalars such as a loss value, Python int and float) have no memory of their
    own to share: they become read-only 0-d arrays (Python int: int64, float: float64), so they
    work wherever an input does, and are refused where herd would write into them."""
    if isinstance(obj, np.ndarray):
        return _from_ndarray(obj, obj, dtype, what, ())
    if isinstance(obj, (np.generic, int, float)) and not isinstance(obj, bool):
        arr = np.array(obj)
        arr.flags.writeable = False
        return _from_ndarray(arr, obj, dtype, what, ())
    try:
        cai = getattr(obj, "__cuda_array_interface__", None)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        # Older torch raises KeyError for bfloat16 here; DLPack describes it.
        if not (hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__")):
            raise invalid_argument(f"{what}: __cuda_array_interface__ failed: {e!r}") from None
        return _from_dlpack(obj, dtype, what)
    if cai is not None:
        return _from_cuda_array_interface(obj, cai, dtype, what)
    iface = getattr(obj, "__array_interface__", None)
    if iface is not None:
        arr = np.asarray(obj)
        data = iface.get("data")
        if isinstance(data, tuple) and arr.__array_interface__["data"][0] != data[0]:
            raise invalid_argument(f"{what}: numpy could not view its __array_interface__ "
                                   "without copying")
        return _from_ndarray(arr, obj, dtype, what, (obj,))
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        return _from_dlpack(obj, dtype, what)
    try:
        mv = memoryview(obj)
    except TypeError:
        raise invalid_argument(
            f"{what} is a {type(obj).__name__}; herd takes numpy arrays, buffer-protocol objects "
            "(bytearray, array.array, memoryview), __array_interface__, "
            "__cuda_array_interface__ or DLPack objects"
        ) from None
    try:
        arr = np.asarray(mv)
    except (ValueError, TypeError) as e:
        raise invalid_argument(f"{what}: buffer format {mv.format!r} is not usable: {e}") from None
    return _from_ndarray(arr, obj, dtype, what, (obj, mv))


def allocate_like(buf):
    """A new, uninitialised output for a push_pull of `buf` (out=None)."""
    if buf.array is not None:
        return np.empty(buf.array.shape, dtype=buf.array.dtype)
    top = type(buf.obj).__module__.split(".")[0]
    if top in ("torch", "cupy"):
        import importlib

        return importlib.import_module(top).empty_like(buf.obj)
    raise make(
        _capi.ERR_NOT_SUPPORTED,
        f"cannot allocate an output like a {type(buf.obj).__name__} in device memory; "
        "pass out= (or out=array to reduce in place)",
    )
