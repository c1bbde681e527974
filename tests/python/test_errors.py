"""Bad inputs raise the right HerdError, on every rank alike, and herd keeps working after."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import herd
from herdtest import WAIT

needs_peers = pytest.mark.skipif("herd.size() < 2", reason="needs at least 2 ranks")


def _raises(cls, fn, *args, **kw):
    with pytest.raises(cls) as info:
        fn(*args, **kw)
    assert isinstance(info.value, herd.HerdError)
    return info.value


def test_non_contiguous_buffers():
    a = np.arange(20, dtype=np.float32)
    e = _raises(herd.InvalidArgumentError, herd.push_pull, a[::2], name="bad.strided")
    assert "C-contiguous" in e.message
    _raises(herd.InvalidArgumentError, herd.push_pull,
            np.asfortranarray(np.ones((3, 4))), name="bad.fortran")
    _raises(herd.InvalidArgumentError, herd.push_pull, a[:10], name="bad.out_strided",
            out=a[::2])
    _raises(herd.InvalidArgumentError, herd.broadcast, a[::2], 0, name="bad.bc_strided")
    assert e.status == herd.ERR_INVALID_ARG and e.name == "HERD_ERR_INVALID_ARG"


def test_read_only_outputs():
    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    e = _raises(herd.InvalidArgumentError, herd.push_pull, np.ones(4, np.float32),
                name="bad.ro_out", out=ro)
    assert "read-only" in e.message
    _raises(herd.InvalidArgumentError, herd.push_pull, ro, name="bad.ro_inplace", out=ro)
    _raises(herd.InvalidArgumentError, herd.push_pull, b"abcd", name="bad.bytes_out",
            out=b"abcd")
    _raises(herd.InvalidArgumentError, herd.broadcast, ro, 0, name="bad.ro_bc")
    _raises(herd.InvalidArgumentError, herd.broadcast, b"abcd", 0, name="bad.bytes_bc")


@pytest.mark.parametrize("bad", [
    np.ones(3, np.complex64), np.ones(3, bool), np.ones(3, np.uint16), np.ones(3, np.int16),
    np.ones(3, np.uint32), np.ones(3, np.uint64), np.ones(3, ">f4"), np.array([1, "a"], object),
], ids=lambda a: str(a.dtype))
def test_dtypes_herd_does_not_have(bad):
    e = _raises(herd.InvalidArgumentError, herd.push_pull, bad, name="bad.dtype")
    assert "dtype" in e.message


def test_wrong_dtype_combinations():
    f32 = np.ones(4, np.float32)
    e = _raises(herd.InvalidArgumentError, herd.push_pull, f32, name="bad.bf16_size",
                dtype="bfloat16")
    assert "2-byte" in e.message
    _raises(herd.InvalidArgumentError, herd.push_pull, f32, name="bad.out_dtype",
            out=np.ones(4, np.float64))
    _raises(herd.InvalidArgumentError, herd.push_pull, f32, name="bad.out_count",
            out=np.ones(5, np.float32))
    _raises(herd.InvalidArgumentError, herd.push_pull, f32, name="bad.dtype_name",
            dtype="complex128")
    _raises(herd.InvalidArgumentError, herd.push_pull, f32, name="bad.dtype_code", dtype=42)
    buf = np.zeros(8, np.int32)
    _raises(herd.InvalidArgumentError, herd.push_pull, buf[:4], name="bad.partial_overlap",
            out=buf[2:6])


def test_unknown_ops():
    a = np.ones(4, np.int32)
    e = _raises(herd.InvalidArgumentError, herd.push_pull, a, name="bad.op", op="median")
    assert "median" in e.message
    _raises(herd.InvalidArgumentError, herd.push_pull, a, name="bad.op_none", op=None)
    # An unknown code passes Python's checks; the library refuses it at submission.
    e = _raises(herd.InvalidArgumentError, herd.push_pull, a, name="bad.op_code", op=99)
    assert e.status == herd.ERR_INVALID_ARG


def test_not_a_buffer_and_bad_names():
    _raises(herd.InvalidArgumentError, herd.push_pull, [1, 2, 3], name="bad.list")
    _raises(herd.InvalidArgumentError, herd.push_pull, "text", name="bad.str")
    a = np.ones(2, np.float32)
    _raises(herd.InvalidArgumentError, herd.push_pull, a, name=12)
    _raises(herd.InvalidArgumentError, herd.push_pull, a, name="nul\0inside")
    _raises(herd.InvalidArgumentError, herd.push_pull, a, name="x" * (herd.MAX_NAME_LEN + 1))
    _raises(herd.InvalidArgumentError, herd.broadcast, a, "0", name="bad.root_type")
    _raises(herd.InvalidArgumentError, herd.broadcast, a, herd.size(), name="bad.root_big")
    _raises(herd.InvalidArgumentError, herd.broadcast, a, -1, name="bad.root_negative")
    _raises(herd.InvalidArgumentError, herd.declare, None)
    # the longest legal name works
    ok = herd.push_pull(np.ones(1, np.int32), name="y" * herd.MAX_NAME_LEN, timeout=WAIT)
    assert ok[0] == herd.size()


def test_wait_twice_and_stale_or_forged_handles():
    h = herd.push_pull_async(np.ones(3, np.int64), name="twice")
    h.wait(WAIT)
    e = _raises(herd.NotFoundError, h.wait)
    assert e.status == herd.ERR_NOT_FOUND
    assert h.poll()
    lib = herd._capi.lib
    # The C handle itself is stale now: the library refuses it too, and so a forged one.
    assert lib.herd_wait_handle(h.id, 0) == herd.ERR_NOT_FOUND
    assert lib.herd_poll_handle(h.id) == herd.ERR_NOT_FOUND
    assert lib.herd_wait_handle(0, 0) == herd.ERR_NOT_FOUND
    assert lib.herd_wait_handle(0x7EADBEEF12345, 0) == herd.ERR_NOT_FOUND
    _raises(herd.NotFoundError, herd.Handle(0x7EADBEEF12345, "forged", None, ()).wait)
    _raises(herd.NotFoundError, herd.Handle(0x7EADBEEF12345, "forged", None, ()).poll)
    _raises(herd.InvalidArgumentError, herd.push_pull_async(np.ones(1), name="neg").wait, -1)


@needs_peers
def test_timeout_leaves_the_handle_valid_and_duplicate_names_are_refused():
    """Rank 0 submits 'late' (twice: the second is refused while the first is in flight) and
    times out waiting; the others submit it only after a broadcast rank 0 sends after that."""
    r, n = herd.rank(), herd.size()
    x = np.full(6, r + 1, np.int32)
    go = np.zeros(1, np.int32)
    timed_out = dup_refused = None
    if r == 0:
        h = herd.push_pull_async(x, name="late", out=x)
        try:
            herd.push_pull_async(np.ones(6, np.int32), name="late")
        except herd.InvalidUsageError as e:
            dup_refused = e
        try:
            h.wait(timeout=0.2)
        except herd.HerdTimeoutError as e:
            timed_out = e
        still_running = not h.poll()
        herd.broadcast(go, 0, name="late.go", timeout=WAIT)
        h.wait(WAIT)
    else:
        herd.broadcast(go, 0, name="late.go", timeout=WAIT)
        herd.push_pull(x, name="late", out=x, timeout=WAIT)
    assert np.all(x == n * (n + 1) // 2)
    if r == 0:
        assert isinstance(dup_refused, herd.InvalidUsageError)
        assert dup_refused.status == herd.ERR_INVALID_USAGE
        assert isinstance(timed_out, herd.HerdTimeoutError) and still_running
        assert timed_out.status == herd.ERR_TIMEOUT


@needs_peers
def test_mismatches_raise_on_every_rank_and_herd_goes_on():
    r, n = herd.rank(), herd.size()
    caught = {}
    cases = {
        "mm.count": lambda: herd.push_pull(np.ones(r + 1, np.float32), name="mm.count",
                                           timeout=WAIT),
        "mm.dtype": lambda: herd.push_pull(np.ones(4, np.float32 if r == 0 else np.int32),
                                           name="mm.dtype", timeout=WAIT),
        "mm.op": lambda: herd.push_pull(np.ones(4, np.int64), name="mm.op",
                                        op="sum" if r == 0 else "max", timeout=WAIT),
        "mm.root": lambda: herd.broadcast(np.ones(4, np.int64), 0 if r == 0 else 1,
                                          name="mm.root", timeout=WAIT),
        "mm.bcast_count": lambda: herd.broadcast(np.ones(2 + r, np.int64), 0,
                                                 name="mm.bcast_count", timeout=WAIT),
    }
    for name, call in cases.items():
        try:
            call()
        except herd.HerdError as e:
            caught[name] = e
    after = herd.push_pull(np.full(3, r, np.int64), name="mm.after", timeout=WAIT)
    reused = herd.push_pull(np.ones(5, np.float32), name="mm.count", timeout=WAIT)
    for name in cases:
        e = caught.get(name)
        assert isinstance(e, herd.MismatchError), (name, e)
        assert e.status == herd.ERR_MISMATCH
        assert name in e.message, (name, e.message)
    assert np.all(after == n * (n - 1) // 2)
    assert np.all(reused == n)


@needs_peers
def test_ctrl_c_interrupts_a_synchronous_call_and_its_buffers_stay_alive():
    """herd.push_pull and herd.barrier wait without a Handle: SIGINT still breaks the wait, and
    the operation stays in flight with its buffers held until it completes."""
    r = herd.rank()
    x = np.ones(4)
    for call in (lambda: herd.push_pull(x, name=f"ctrlc.sync.rank{r}", out=x),
                 lambda: herd.barrier(name=f"ctrlc.barrier.rank{r}")):
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        start = time.monotonic()
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                call()
        finally:
            timer.cancel()
        assert time.monotonic() - start < 5
    # The push_pull is in flight (herd.shutdown() will fail it) and x is held until then.
    assert any(any(o is x for o in keep) for keep in herd._core._orphans.values())


@needs_peers
def test_ctrl_c_interrupts_a_wait_and_the_handle_stays_valid():
    """A wait for a tensor no other rank will ever submit is broken by SIGINT."""
    r = herd.rank()
    h = herd.push_pull_async(np.ones(4), name=f"ctrlc.only.rank{r}")
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            h.wait()
    finally:
        timer.cancel()
    elapsed = time.monotonic() - start
    assert elapsed < 5, elapsed
    assert not h.poll()  # still in flight and valid; herd.shutdown() will fail it
    _raises(herd.HerdTimeoutError, h.wait, 0)
