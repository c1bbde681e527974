"""GPU memory through herd's Python API: torch CUDA tensors (and cupy arrays, when cupy imports)
through push_pull and broadcast, every result exact; the producer's stream (torch's current
stream, cupy's stream in __cuda_array_interface__) orders herd's reads.

Run by tests/gpu's python_gpu_* registrations (mpiexec -n 1 over NCCL, -n 2 over the MPI
staging, HERD_GPU_BACKEND=mpi) and collected by tests/python's suites as well. The whole module
skips, with one reason that starts "herd GPU tests skipped:", without torch, without a CUDA
device, without GPU support in libherd, or where NCCL would need more GPUs than this host has
ranks. The ranks agree on that decision (a host-memory push_pull), so they always run the same
tests and make the same herd calls.
"""

import ctypes
import os

import numpy as np
import pytest

import herd
from herd._capi import lib
from herdtest import DTYPES, FLOATS, OPS, WAIT

SKIP = "herd GPU tests skipped: "


def _agree(flag, name):
    """max over the ranks of a 0/1 flag (host memory, so it works whatever the GPUs do)."""
    a = np.array([flag], dtype=np.int32)
    herd.push_pull(a, name=name, op="max", out=a, timeout=WAIT)
    return int(a[0])


def _local_reason():
    try:
        import torch
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise  # torch is installed but broken: that is a failure, never a skip
        return "torch is not installed"
    # Any other import failure (a missing NCCL symbol, when libherd's NCCL was loaded first and
    # globally) propagates: it is the bug tests/python/test_import_order.py is about.
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is false (no CUDA device)"
    backend = (os.environ.get("HERD_GPU_BACKEND") or "nccl").lower()
    if backend != "mpi" and herd.local_size() > torch.cuda.device_count():
        return (f"NCCL needs one GPU per rank, and {herd.local_size()} ranks share "
                f"{torch.cuda.device_count()} GPU(s) here (HERD_GPU_BACKEND=mpi lets them)")
    return None


def _decide():
    """(torch or None, device or None, skip reason or None), alike on every rank."""
    why = _local_reason()
    if _agree(1 if why else 0, "test_gpu.can_run"):
        return None, None, SKIP + (why or "another rank cannot run them")
    import torch

    idx = herd.local_rank() % torch.cuda.device_count()
    torch.cuda.set_device(idx)
    dev = torch.device("cuda", idx)
    # Collective probe: a zero-length GPU push_pull (starts herd's GPU plane on every rank).
    try:
        herd.push_pull(torch.empty(0, device=dev), name="test_gpu.probe", timeout=WAIT)
        probe = None
    except herd.NotSupportedError as e:
        probe = f"libherd has no GPU support ({e})"
    except herd.HerdError as e:
        probe = f"herd's GPU plane did not start ({type(e).__name__}: {e})"
    if _agree(1 if probe else 0, "test_gpu.probe_ok"):
        return None, None, SKIP + (probe or "another rank's GPU plane did not start")
    return torch, dev, None


torch, DEV, _REASON = _decide()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _have_cupy():
    if torch is None:
        return False
    try:
        import cupy

        ok = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        ok = False
    return not _agree(0 if ok else 1, "test_gpu.cupy")


HAVE_CUPY = _have_cupy()
# (Without torch or a device the module's own skip, with its reason, applies instead.)
needs_cupy = pytest.mark.skipif(_REASON is None and not HAVE_CUPY,
                                reason="cupy is not importable on every rank")

TORCH_DTYPES = {}
if torch is not None:
    TORCH_DTYPES = {
        "uint8": torch.uint8, "int8": torch.int8, "int32": torch.int32, "int64": torch.int64,
        "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
        "float64": torch.float64,
    }

COUNT = 3 * 37  # odd on purpose


def _inputs(rank, n, dtype, op, count):
    """Integer values of rank `rank`'s input, chosen so every result is exact in `dtype`
    (as tests/python/test_push_pull.py)."""
    i = np.arange(count, dtype=np.int64)
    signed = dtype != "uint8"
    if op == "product":
        v = 1 + (i + rank) % 2
        if signed:
            v = np.where((3 * i + rank) % 5 == 0, -v, v)
    elif op == "average" and dtype in FLOATS:
        v = (i % 7) - 3 + (2 * rank - (n - 1))  # sums to a multiple of n: the mean is exact
    else:
        v = (7 * i + 3 * rank) % 11
        if signed:
            v = v - 5
    return v


def _expected(n, dtype, op, count):
    all_v = np.stack([_inputs(r, n, dtype, op, count) for r in range(n)])
    if op == "sum":
        return all_v.sum(axis=0)
    if op == "min":
        return all_v.min(axis=0)
    if op == "max":
        return all_v.max(axis=0)
    if op == "product":
        return all_v.prod(axis=0)
    s = all_v.sum(axis=0)
    return np.sign(s) * (np.abs(s) // n)  # integer average truncates toward zero


def _tensor(values, dtype):
    """A CUDA tensor of `dtype` holding the exact integers `values`."""
    return torch.tensor(np.asarray(values, dtype=np.float64)).to(TORCH_DTYPES[dtype]).to(DEV)


def _values(t):
    """A tensor's values, exactly, as float64 numpy (read back to the host)."""
    return t.detach().to("cpu").to(torch.float64).numpy()


def _kw(dtype):
    return {"dtype": "bfloat16"} if dtype == "bfloat16" else {}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_every_dtype_and_op(dtype, op):
    r, n = herd.rank(), herd.size()
    vals = _inputs(r, n, dtype, op, COUNT)
    want = _expected(n, dtype, op, COUNT).astype(np.float64)
    a = _tensor(vals, dtype).reshape(3, 37)
    inplace = a.clone()
    given = torch.full_like(a, 99)
    base = f"gpu.torch.{dtype}.{op}"
    new = herd.push_pull(a, name=base + ".new", op=op, timeout=WAIT, **_kw(dtype))
    herd.push_pull(inplace, name=base + ".inplace", op=op, out=inplace, timeout=WAIT,
                   **_kw(dtype))
    got = herd.push_pull(a, name=base + ".out", op=op, out=given, timeout=WAIT, **_kw(dtype))
    torch.cuda.synchronize()
    assert isinstance(new, torch.Tensor) and new.is_cuda and new.dtype == a.dtype
    assert new.shape == a.shape and new.device == a.device
    assert got is given
    for t in (new, inplace, given):
        assert np.array_equal(_values(t).ravel(), want)
    assert np.array_equal(_values(a).ravel(), np.asarray(vals, dtype=np.float64))  # input kept


def test_torch_bfloat16_without_dtype_override():
    """A torch bfloat16 CUDA tensor needs no dtype= (torch describes it as "<V2" in
    __cuda_array_interface__, or not at all in older versions; DLPack says bfloat16)."""
    r, n = herd.rank(), herd.size()
    vals = _inputs(r, n, "bfloat16", "sum", COUNT)
    a = _tensor(vals, "bfloat16")
    herd.push_pull(a, name="gpu.torch.bf16.native", out=a, timeout=WAIT)
    assert np.array_equal(_values(a), _expected(n, "bfloat16", "sum", COUNT).astype(np.float64))


def test_torch_cuda_training_step():
    """One data-parallel SGD step of a linear model on CUDA, as a Horovod-style optimizer runs it:
    parameters broadcast from rank 0; each rank's forward and backward on its own batch on a side
    stream (herd must order its reads after that stream); every gradient summed by herd on the
    device, all in flight at once; the step taken. Every rank ends with exactly the parameters
    one process gets from the global batch (integer data, loss = sum of squares / 2, lr = 2**-10,
    float64: every value is exact)."""
    r, n = herd.rank(), herd.size()
    lr = 2.0 ** -10

    def batch(rank):
        g = np.random.default_rng(100 + rank)
        return (g.integers(-3, 4, size=(16, 8)).astype(np.float64),
                g.integers(-3, 4, size=(16, 4)).astype(np.float64))

    w0 = (np.arange(32).reshape(4, 8) % 5 - 2).astype(np.float64)
    b0 = np.array([1.0, -1.0, 2.0, 0.0])
    model = torch.nn.Linear(8, 4).to(device=DEV, dtype=torch.float64)
    with torch.no_grad():
        if r == 0:
            model.weight.copy_(torch.tensor(w0))
            model.bias.copy_(torch.tensor(b0))
        else:
            model.weight.fill_(7.0)  # replaced by rank 0's values
            model.bias.fill_(7.0)
    for name, p in model.named_parameters():
        herd.broadcast(p.data, 0, name=f"gpu.train.init.{name}", timeout=WAIT)
    side = torch.cuda.Stream(device=DEV)
    side.wait_stream(torch.cuda.current_stream(DEV))
    with torch.cuda.stream(side):
        x, y = (torch.tensor(a, device=DEV) for a in batch(r))
        loss = ((model(x) - y) ** 2).sum() / 2
        loss.backward()
        handles = [herd.push_pull_async(p.grad, name=f"gpu.train.grad.{name}", op="sum",
                                        out=p.grad)
                   for name, p in model.named_parameters()]
        for h in handles:
            h.wait(WAIT)
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    side.synchronize()
    gw, gb = np.zeros_like(w0), np.zeros_like(b0)
    for k in range(n):
        xk, yk = batch(k)
        e = xk @ w0.T + b0 - yk
        gw += e.T @ xk
        gb += e.sum(axis=0)
    assert np.array_equal(_values(model.weight), w0 - lr * gw)
    assert np.array_equal(_values(model.bias), b0 - lr * gb)


def test_torch_many_async_fused():
    """64 small tensors in flight at once (they travel fused), waited in reverse order."""
    r, n = herd.rank(), herd.size()
    ts = [_tensor(_inputs(r, n, "float32", "sum", 100 + k), "float32") for k in range(64)]
    hs = [herd.push_pull_async(t, name=f"gpu.torch.many.{k}", out=t) for k, t in enumerate(ts)]
    for h in reversed(hs):
        h.wait(WAIT)
    for k, t in enumerate(ts):
        assert np.array_equal(_values(t), _expected(n, "float32", "sum", 100 + k))


def test_torch_large_alone():
    """One tensor past the default 64 MiB fusion threshold: reduced alone, in place."""
    r, n = herd.rank(), herd.size()
    count = (64 << 20) // 4 + 1027
    a = torch.arange(count, device=DEV, dtype=torch.int64).remainder_(1000).to(torch.float32)
    a.add_(r)
    herd.push_pull(a, name="gpu.torch.large", out=a, timeout=WAIT)
    want = torch.arange(count, device=DEV, dtype=torch.int64).remainder_(1000).to(torch.float32)
    want.mul_(n).add_(n * (n - 1) // 2)
    assert torch.equal(a, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_broadcast_every_root(dtype):
    r, n = herd.rank(), herd.size()
    got = []
    for root in range(n):
        vals = _inputs(root, n, dtype, "max", COUNT)
        a = _tensor(vals, dtype) if r == root else torch.full(
            (COUNT,), 7, dtype=TORCH_DTYPES[dtype], device=DEV)
        out = herd.broadcast(a, root, name=f"gpu.torch.bcast.{dtype}.{root}", timeout=WAIT,
                             **_kw(dtype))
        assert out is a
        got.append((_values(a), np.asarray(vals, dtype=np.float64)))
    for have, want in got:
        assert np.array_equal(have, want)


def _slow(stream):
    """Keeps `stream` busy for a while before the work enqueued after it."""
    with torch.cuda.stream(stream):
        if hasattr(torch.cuda, "_sleep"):
            torch.cuda._sleep(400_000_000)  # GPU clock cycles: a few hundred ms
        else:
            m = torch.randn(4096, 4096, device=DEV)
            for _ in range(20):
                m = m @ m / 4096


def test_torch_producer_stream_orders_the_read():
    """The tensor is written on a side stream that is still busy when push_pull is called
    (torch's current stream is that side stream): herd must read the written data."""
    r, n = herd.rank(), herd.size()
    count = 1 << 22
    src = torch.arange(count, device=DEV, dtype=torch.float32).remainder_(97).add_(r)
    x = torch.full((count,), -1.0, device=DEV)
    torch.cuda.synchronize()
    side = torch.cuda.Stream(device=DEV)
    _slow(side)
    with torch.cuda.stream(side):
        x.copy_(src)
        h = herd.push_pull_async(x, name="gpu.torch.stream.producer", out=x)
        busy = not side.query()
    h.wait(WAIT)
    want = torch.arange(count, device=DEV, dtype=torch.float32).remainder_(97).mul_(n)
    want.add_(n * (n - 1) // 2)
    side.synchronize()
    assert busy, "the side stream finished before the submit: the test raced nothing"
    assert torch.equal(x, want)


def test_torch_handle_stream_wait():
    """herd_handle_stream_wait orders a consumer stream after the op, before the host waits."""
    r, n = herd.rank(), herd.size()
    count = 1 << 20
    x = torch.full((count,), float(r + 1), device=DEV)
    side = torch.cuda.Stream(device=DEV)
    consumer = torch.cuda.Stream(device=DEV)
    torch.cuda.synchronize()
    _slow(side)
    with torch.cuda.stream(side):
        x.mul_(2)
        h = herd.push_pull_async(x, name="gpu.torch.stream.consumer", out=x)
    st = lib.herd_handle_stream_wait(h.id, ctypes.c_void_p(consumer.cuda_stream))
    with torch.cuda.stream(consumer):
        seen = x.clone()
    consumer.synchronize()
    h.wait(WAIT)
    assert st == 0, herd.status_name(st)
    assert torch.equal(seen, torch.full_like(x, float(n * (n + 1))))


def test_torch_errors():
    """Wrong-side buffers are refused before anything is submitted (no collective follows)."""
    a = torch.ones(16, device=DEV)
    with pytest.raises(herd.InvalidArgumentError):
        herd.push_pull(a, name="gpu.torch.err.hostout", out=np.zeros(16, np.float32))
    with pytest.raises(herd.InvalidArgumentError):
        herd.push_pull(a, name="gpu.torch.err.dtype", out=torch.ones(16, device=DEV,
                                                                      dtype=torch.float64))
    # A CUDA ordinal past the last device (torch tensors always name a real one: call C).
    hid = ctypes.c_int64(0)
    st = lib.herd_push_pull(b"gpu.torch.err.nodev", a.data_ptr(), a.data_ptr(), 16, herd.FLOAT32,
                            herd.SUM, torch.cuda.device_count(), ctypes.byref(hid))
    assert st in (herd.ERR_INVALID_ARG, herd.ERR_NOT_SUPPORTED), herd.status_name(st)


# ---- cupy --------------------------------------------------------------------------------------

CUPY_DTYPES = [d for d in DTYPES if d != "bfloat16"]  # cupy has no bfloat16


@needs_cupy
@pytest.mark.parametrize("op", ["sum", "average", "max", "product"])
@pytest.mark.parametrize("dtype", CUPY_DTYPES)
def test_cupy_push_pull(dtype, op):
    import cupy

    r, n = herd.rank(), herd.size()
    with cupy.cuda.Device(DEV.index):
        a = cupy.asarray(_inputs(r, n, dtype, op, COUNT)).astype(dtype)
        b = a.copy()
        new = herd.push_pull(a, name=f"gpu.cupy.{dtype}.{op}.new", op=op, timeout=WAIT)
        herd.push_pull(b, name=f"gpu.cupy.{dtype}.{op}.inplace", op=op, out=b, timeout=WAIT)
        want = _expected(n, dtype, op, COUNT).astype(np.float64)
        assert isinstance(new, cupy.ndarray)
        assert np.array_equal(cupy.asnumpy(new).astype(np.float64), want)
        assert np.array_equal(cupy.asnumpy(b).astype(np.float64), want)


@needs_cupy
def test_cupy_broadcast_and_stream():
    """A cupy array written on a non-default cupy stream (its __cuda_array_interface__ names
    the stream), broadcast from every root."""
    import cupy

    r, n = herd.rank(), herd.size()
    with cupy.cuda.Device(DEV.index):
        s = cupy.cuda.Stream(non_blocking=True)
        for root in range(n):
            with s:
                a = cupy.full(1 << 20, 5, dtype=cupy.int32)
                if r == root:
                    a += cupy.arange(1 << 20, dtype=cupy.int32)
                herd.broadcast(a, root, name=f"gpu.cupy.bcast.{root}", timeout=WAIT)
            s.synchronize()
            want = 5 + np.arange(1 << 20, dtype=np.int64)
            assert np.array_equal(cupy.asnumpy(a).astype(np.int64), want)
