"""push_pull: every dtype and op, in place and out of place, sync and async, exact results."""

import gc
import threading
import time
import weakref

import numpy as np
import pytest

import herd
from herdtest import DTYPES, FLOATS, OPS, WAIT, as_float64, kwargs, make, storage

SHAPE = (3, 37)  # odd sizes on purpose: fusion and packing must not assume round counts


def _inputs(rank, n, dtype, op, count):
    """Integer values of rank `rank`'s input, chosen so every result is exact in `dtype`."""
    i = np.arange(count, dtype=np.int64)
    signed = dtype != "uint8"
    if op == "product":
        # magnitudes 1 or 2 (|product| <= 2**n), a sign flip now and then for signed types
        v = 1 + (i + rank) % 2
        if signed:
            v = np.where((3 * i + rank) % 5 == 0, -v, v)
    elif op == "average" and dtype in FLOATS:
        # g(i) plus an offset that sums to zero over the ranks: the average is exactly g(i)
        v = (i % 7) - 3 + (2 * rank - (n - 1))
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
    if dtype in FLOATS:
        assert np.all(s % n == 0)
    return np.sign(s) * (np.abs(s) // n)  # integer average truncates toward zero


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_and_op(dtype, op):
    r, n = herd.rank(), herd.size()
    count = SHAPE[0] * SHAPE[1]
    a = make(_inputs(r, n, dtype, op, count), dtype).reshape(SHAPE)
    a_before = a.copy()
    inplace = a.copy()
    given_out = np.full(SHAPE, 99, dtype=storage(dtype))
    kw = kwargs(dtype)
    tag = f"pp.{dtype}.{op}"

    h_new = herd.push_pull_async(a, name=tag + ".new", op=op, **kw)
    h_in = herd.push_pull_async(inplace, name=tag + ".inplace", op=op, out=inplace, **kw)
    got_out = herd.push_pull(a, name=tag + ".out", op=op, out=given_out, timeout=WAIT, **kw)
    got_in = h_in.wait(WAIT)  # waited in another order than submitted
    got_new = h_new.wait(WAIT)

    want = _expected(n, dtype, op, count).reshape(SHAPE)
    assert got_in is inplace and got_out is given_out
    assert got_new.shape == SHAPE and got_new.dtype == storage(dtype)
    for got in (got_new, got_in, got_out):
        assert np.array_equal(as_float64(got, dtype), want), (dtype, op, got, want)
    assert np.array_equal(a, a_before), "out-of-place push_pull wrote its input"


def test_op_codes_and_names_are_interchangeable():
    n = herd.size()
    a = np.arange(5, dtype=np.int32)
    got = [herd.push_pull(a, name=f"opcode.{i}", op=code, timeout=WAIT)
           for i, code in enumerate([herd.SUM, "SUM", herd.MAX, "Max"])]
    assert np.array_equal(got[0], a * n) and np.array_equal(got[1], a * n)
    assert np.array_equal(got[2], a) and np.array_equal(got[3], a)


def test_shapes_empty_scalar_and_large():
    r, n = herd.rank(), herd.size()
    empty = herd.push_pull(np.zeros(0, np.float32), name="shape.empty", timeout=WAIT)
    scalar = herd.push_pull(np.array(3, np.int64), name="shape.scalar", timeout=WAIT)
    big = (np.arange(1 << 20) % 5 + r).astype(np.float32)
    herd.push_pull(big, name="shape.big", out=big, timeout=WAIT)
    cube = np.full((2, 3, 4), r, np.int32)
    cube_sum = herd.push_pull(cube, name="shape.cube", timeout=WAIT)
    assert empty.shape == (0,)
    assert scalar.shape == () and scalar == 3 * n
    want = (np.arange(1 << 20) % 5) * n + n * (n - 1) // 2
    assert np.array_equal(big, want.astype(np.float32))
    assert cube_sum.shape == (2, 3, 4) and np.all(cube_sum == n * (n - 1) // 2)


def test_unnamed_calls_get_agreeing_names():
    r, n = herd.rank(), herd.size()
    handles = [herd.push_pull_async(np.full(4, r + k, np.int64)) for k in range(3)]
    names = [h.name for h in handles]
    results = [h.wait(WAIT) for h in handles]
    first = int(names[0].rsplit(".", 1)[1])
    first_all = herd.push_pull(np.array([first]), name="noname.check", op="min", timeout=WAIT)
    assert names == [f"push_pull.noname.{first + k}" for k in range(3)]
    assert first_all[0] == first  # every rank is at the same counter
    for k, res in enumerate(results):
        assert np.all(res == n * k + n * (n - 1) // 2)


def test_async_interleaved_in_rank_dependent_orders():
    r, n = herd.rank(), herd.size()
    rng = np.random.default_rng(1234 + r)  # submission and wait orders differ per rank
    specs = [(k, ["int32", "float32", "float64", "int64", "uint8"][k % 5], 1 + 97 * k)
             for k in range(12)]
    arrays = {k: make(np.arange(c) % 3 + r, dt) for k, dt, c in specs}
    handles = {}
    for k in rng.permutation(len(specs)):
        k, dt, c = specs[k]
        handles[k] = herd.push_pull_async(arrays[k], name=f"interleaved.{k}",
                                          out=arrays[k], op="sum")
    order = rng.permutation(len(specs))
    polled = handles[order[0]]
    while not polled.poll():
        time.sleep(0.001)
    assert polled.done
    results = {k: handles[k].wait(WAIT) for k in order}
    for k, dt, c in specs:
        want = (np.arange(c) % 3) * n + n * (n - 1) // 2
        assert results[k] is arrays[k]
        assert np.array_equal(results[k].astype(np.int64), want), k


def test_handle_as_context_manager():
    r, n = herd.rank(), herd.size()
    x = np.full(8, r, np.int32)
    with herd.push_pull_async(x, name="ctx", out=x) as h:
        pass
    assert h.poll()
    assert np.all(x == n * (n - 1) // 2)
    with pytest.raises(herd.NotFoundError):
        h.wait()


def test_handle_keeps_buffers_alive_until_waited():
    n = herd.size()
    a = np.arange(1000, dtype=np.int64)
    ref = weakref.ref(a)
    h = herd.push_pull_async(a, name="keepalive")
    del a
    gc.collect()
    alive_before_wait = ref() is not None
    res = h.wait(WAIT)
    gc.collect()
    assert alive_before_wait
    assert ref() is None, "the handle still holds its input after wait()"
    assert np.array_equal(res, np.arange(1000) * n)


def test_dropped_handle_is_released_later():
    h = herd.push_pull_async(np.ones(100), name="dropped")
    hid = h.id
    del h
    gc.collect()
    orphaned = hid in herd._core._orphans
    herd.push_pull(np.ones(1), name="after.dropped", timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while hid in herd._core._orphans and time.monotonic() < deadline:
        herd._core._reap_orphans()
        time.sleep(0.01)
    assert orphaned
    assert hid not in herd._core._orphans
    assert herd._capi.lib.herd_wait_handle(hid, 0) == herd.ERR_NOT_FOUND


def test_submit_and_wait_from_threads():
    r, n = herd.rank(), herd.size()
    results = {}
    errors = []

    def work(t):
        try:
            x = np.full(50 + t, t + r, np.float64)
            results[t] = herd.push_pull(x, name=f"thread.{t}", op="sum", timeout=WAIT)
        except Exception as e:  # reported below, on the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for t in range(4):
        assert np.all(results[t] == n * t + n * (n - 1) // 2)
