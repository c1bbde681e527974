"""What push_pull and broadcast accept besides numpy arrays, and how it dispatches."""

import array
import ctypes

import numpy as np
import pytest

import herd
from herdtest import WAIT, from_bf16, to_bf16


class ArrayInterfaceOnly:
    """Exposes memory only through __array_interface__ (as some libraries do)."""

    def __init__(self, arr):
        self._arr = arr
        self.__array_interface__ = arr.__array_interface__


class DLPackOnly:
    """Exposes memory only through DLPack, as a torch CPU tensor would."""

    def __init__(self, arr):
        self._arr = arr

    def __dlpack__(self, **kw):
        return self._arr.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._arr.__dlpack_device__()


class FakeCudaArray:
    """Claims device memory through __cuda_array_interface__. The pointer is really host memory,
    so nothing breaks if a library ever dereferences it; herd must see device 0."""

    def __init__(self, host):
        self._host = host
        self.__cuda_array_interface__ = {
            "shape": host.shape, "typestr": host.dtype.str,
            "data": (host.ctypes.data, False), "version": 3, "strides": None,
        }


class FakeCudaDLPack:
    """A DLPack tensor whose capsule says CUDA device 0 (over host memory, as above)."""

    def __init__(self, host):
        self._host = host

    def __dlpack__(self, **kw):
        capsule = self._host.__dlpack__()
        name = herd._dlpack._get_name(capsule)
        managed = herd._dlpack._DLManagedTensor.from_address(
            herd._dlpack._get_pointer(capsule, name))
        managed.dl_tensor.device.device_type = herd._dlpack.KDL_CUDA
        managed.dl_tensor.device.device_id = 0
        return capsule

    def __dlpack_device__(self):
        return (herd._dlpack.KDL_CUDA, 0)


def test_buffer_protocol_objects():
    r, n = herd.rank(), herd.size()
    tri = n * (n - 1) // 2
    ba = bytearray([r, 1, 2])
    ints = array.array("i", [r, 10, 20])
    dbl = array.array("d", [r + 0.5, 1.5])
    mv = memoryview(bytearray(np.array([r, 2], np.float32).tobytes())).cast("f")
    ro = bytes([r, 7])  # read-only input is fine out of place
    out_ba = bytearray(3)

    r_ba = herd.push_pull(ba, name="bp.bytearray", out=ba, timeout=WAIT)
    r_ints = herd.push_pull(ints, name="bp.array_i", out=ints, timeout=WAIT)
    r_dbl = herd.push_pull(dbl, name="bp.array_d", op="max", timeout=WAIT)
    r_mv = herd.push_pull(mv, name="bp.memoryview", out=mv, timeout=WAIT)
    r_ro = herd.push_pull(ro, name="bp.bytes", timeout=WAIT)
    r_out = herd.push_pull(np.array([1, 2, r], np.uint8), name="bp.out_bytearray", out=out_ba,
                           timeout=WAIT)
    r_bc = herd.broadcast(array.array("q", [r, r]), 0, name="bp.bcast", timeout=WAIT)

    assert r_ba is ba and list(ba) == [tri, n, 2 * n]
    assert r_ints is ints and list(ints) == [tri, 10 * n, 20 * n]
    assert isinstance(r_dbl, np.ndarray) and list(r_dbl) == [n - 0.5, 1.5]
    assert r_mv is mv and mv.tolist() == [tri, 2 * n]
    assert list(r_ro) == [tri, 7 * n]
    assert r_out is out_ba and list(out_ba) == [n, 2 * n, tri]
    assert list(r_bc) == [0, 0]


def test_array_interface_and_dlpack_objects():
    r, n = herd.rank(), herd.size()
    backing = np.full((2, 3), r, np.int32)
    ai = ArrayInterfaceOnly(backing)
    dl_backing = np.full(5, r + 1, np.float64)
    dl = DLPackOnly(dl_backing)
    bc_backing = np.full(4, r, np.int64)

    r_ai = herd.push_pull(ai, name="ai.inplace", out=ai, timeout=WAIT)
    r_dl = herd.push_pull(dl, name="dl.inplace", out=dl, timeout=WAIT)
    r_dl_new = herd.push_pull(DLPackOnly(np.full(3, 2, np.int8)), name="dl.new", timeout=WAIT)
    herd.broadcast(DLPackOnly(bc_backing), 0, name="dl.bcast", timeout=WAIT)

    assert r_ai is ai and np.all(backing == n * (n - 1) // 2)
    assert r_dl is dl and np.all(dl_backing == n * (n + 1) // 2)
    assert isinstance(r_dl_new, np.ndarray) and r_dl_new.dtype == np.int8
    assert np.all(r_dl_new == 2 * n)
    assert np.all(bc_backing == 0)


def test_bfloat16_override_and_ml_dtypes():
    r, n = herd.rank(), herd.size()
    bits = to_bf16([1.5, -2.0, float(r)])
    herd.push_pull(bits, name="bf16.bits", out=bits, dtype="bfloat16", timeout=WAIT)
    by_code = herd.push_pull(to_bf16([0.25]), name="bf16.code", dtype=herd.BFLOAT16,
                             op="max", timeout=WAIT)
    assert list(from_bf16(bits)) == [1.5 * n, -2.0 * n, n * (n - 1) / 2]
    assert list(from_bf16(by_code)) == [0.25]
    try:
        import ml_dtypes
    except ImportError:
        return  # an optional extra; the override above is what every install has
    x = np.array([1, 2, r], dtype=ml_dtypes.bfloat16)
    got = herd.push_pull(x, name="bf16.ml_dtypes", timeout=WAIT)
    assert got.dtype == x.dtype
    assert got.astype(np.float32).tolist() == [n, 2 * n, n * (n - 1) / 2]


def test_device_memory_maps_to_a_device_and_the_library_decides():
    """Until herd is built with GPU support, a CUDA buffer reaches the library as device 0 and
    comes back HERD_ERR_NOT_SUPPORTED, raised as NotSupportedError, on every rank alike."""
    host = np.zeros(4, np.float32)
    buf = herd._buffers.resolve(FakeCudaArray(host))
    assert (buf.device, buf.ptr, buf.count, buf.dtype) == (0, host.ctypes.data, 4, herd.FLOAT32)
    assert buf.array is None
    fake = FakeCudaArray(host)
    with pytest.raises(herd.NotSupportedError) as e1:
        herd.push_pull(fake, name="gpu.pp", out=fake)
    with pytest.raises(herd.NotSupportedError) as e2:
        herd.broadcast(fake, 0, name="gpu.bc")
    with pytest.raises(herd.NotSupportedError):  # no framework to allocate the output with
        herd.push_pull(fake, name="gpu.alloc")
    dl = FakeCudaDLPack(np.zeros(6, np.int32))
    dl_buf = herd._buffers.resolve(dl)
    assert (dl_buf.device, dl_buf.count, dl_buf.dtype) == (0, 6, herd.INT32)
    assert dl_buf.array is None
    with pytest.raises(herd.NotSupportedError) as e3:
        herd.broadcast(dl, 0, name="gpu.dlpack")
    assert e1.value.status == e2.value.status == e3.value.status == herd.ERR_NOT_SUPPORTED


def test_dispatch_reads_pointer_count_and_dtype():
    a = np.arange(12, dtype=np.float16).reshape(3, 4)
    for obj in (a, ArrayInterfaceOnly(a), DLPackOnly(a), memoryview(a)):
        b = herd._buffers.resolve(obj)
        assert (b.ptr, b.count, b.dtype, b.device) == (a.ctypes.data, 12, herd.FLOAT16, -1)
    c = (ctypes.c_int64 * 3)()
    b = herd._buffers.resolve(c)
    assert (b.ptr, b.count, b.dtype) == (ctypes.addressof(c), 3, herd.INT64)


# ---- framework dtypes and streams (stand-ins written as torch's versions behave) -------------

class _TorchDtype:
    """str() like torch.dtype: "torch.bfloat16"."""

    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


class TorchLikeCuda:
    """A CUDA tensor as torch exposes it: a `dtype` attribute, __cuda_array_interface__ as a
    given torch version writes it (`typestr`, or raising KeyError as older torch does for
    bfloat16), and DLPack, recording the stream __dlpack__ is asked for. Memory is host memory
    under a CUDA label; nothing dereferences it."""

    def __init__(self, host, dtype_name, typestr=None, cai_raises=False):
        self._host = host
        self.dtype = _TorchDtype(dtype_name)
        self._typestr = typestr
        self._cai_raises = cai_raises
        self.dlpack_calls = []

    @property
    def __cuda_array_interface__(self):
        if self._cai_raises:
            raise KeyError(self.dtype.name)
        return {"shape": self._host.shape, "typestr": self._typestr,
                "data": (self._host.ctypes.data, False), "version": 2, "strides": None}

    def __dlpack__(self, stream=None, max_version=None):
        self.dlpack_calls.append(stream)
        capsule = self._host.__dlpack__()
        name = herd._dlpack._get_name(capsule)
        managed = herd._dlpack._DLManagedTensor.from_address(
            herd._dlpack._get_pointer(capsule, name))
        managed.dl_tensor.device.device_type = herd._dlpack.KDL_CUDA
        managed.dl_tensor.device.device_id = 0
        if self.dtype.name == "bfloat16":
            managed.dl_tensor.dtype.code = herd._dlpack.KDL_BFLOAT
        return capsule

    def __dlpack_device__(self):
        return (herd._dlpack.KDL_CUDA, 0)


@pytest.mark.parametrize("typestr,cai_raises,via", [
    ("<f2", False, "cai"),   # torch 2.5: bfloat16 described as float16
    ("<V2", False, "cai"),   # newer torch: an opaque 2-byte type
    (None, True, "dlpack"),  # older torch: the property raises KeyError
])
def test_torch_bfloat16_is_bfloat16(typestr, cai_raises, via):
    host = np.zeros(5, np.uint16)
    t = TorchLikeCuda(host, "bfloat16", typestr, cai_raises)
    b = herd._buffers.resolve(t)
    assert (b.device, b.ptr, b.count, b.dtype) == (0, host.ctypes.data, 5, herd.BFLOAT16)
    assert b.array is None
    # Only the fallback asks DLPack; it names the stream herd orders on (legacy default: 1).
    assert t.dlpack_calls == ([1] if via == "dlpack" else [])


@pytest.mark.parametrize("name,np_dtype,code", [
    ("float16", np.float16, herd.FLOAT16), ("float32", np.float32, herd.FLOAT32),
    ("int64", np.int64, herd.INT64), ("uint8", np.uint8, herd.UINT8),
])
def test_torch_dtype_wins_over_typestr_only_where_sizes_match(name, np_dtype, code):
    host = np.zeros(3, np_dtype)
    assert herd._buffers.resolve(TorchLikeCuda(host, name, host.dtype.str)).dtype == code
    # A dtype attribute that does not describe the memory's element size is not trusted.
    odd = TorchLikeCuda(host, "float64" if host.itemsize != 8 else "int8", host.dtype.str)
    assert herd._buffers.resolve(odd).dtype == code


def test_dlpack_on_cuda_names_the_stream_herd_orders_on(monkeypatch):
    """__dlpack__(stream=S) with S the stream herd records its ready event on, so a producer
    still writing on a side stream orders S after it (torch does nothing for stream=None)."""
    host = np.zeros(4, np.int32)
    t = TorchLikeCuda(host, "int32", cai_raises=True)
    monkeypatch.setattr(herd._buffers, "_current_stream", lambda obj: 0x5A5A0)
    b = herd._buffers.resolve(t)
    assert t.dlpack_calls == [0x5A5A0]
    assert (b.stream, b.dtype, b.device) == (0x5A5A0, herd.INT32, 0)
    # Host memory through DLPack is asked for nothing.
    d = DLPackOnly(np.zeros(2, np.float32))
    assert herd._buffers.resolve(d).stream is None


def test_torch_current_stream_is_asked(monkeypatch):
    """For a torch tensor whose interface names no stream, herd orders after torch's current
    stream on the tensor's device (a stand-in torch module answers)."""
    import sys
    import types

    fake_torch = types.ModuleType("torch")
    asked = []

    class _Stream:
        cuda_stream = 0x7E57

    def current_stream(device):
        asked.append(device)
        return _Stream()

    fake_torch.cuda = types.SimpleNamespace(current_stream=current_stream)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    TorchTensor = type("Tensor", (TorchLikeCuda,), {"__module__": "torch.fake"})
    host = np.zeros(2, np.float32)
    t = TorchTensor(host, "float32", "<f4")
    t.device = "cuda:0"
    b = herd._buffers.resolve(t)
    assert (b.stream, asked) == (0x7E57, ["cuda:0"])
    t2 = TorchTensor(host, "float32", cai_raises=True)
    t2.device = "cuda:0"
    b2 = herd._buffers.resolve(t2)
    assert b2.stream == 0x7E57 and t2.dlpack_calls == [0x7E57]
