"""herd's Python API: lifetime, queries, push_pull/broadcast and the Handle they return.

Threads: herd's C calls release the GIL (ctypes.CDLL does), so a rank's other Python threads
run while one waits. Blocking waits are cut into WAIT_SLICE_MS slices, so a KeyboardInterrupt
reaches the program within one slice; a handle whose wait was interrupted stays valid. A wait
without a timeout drives the rounds its operation needs on the waiting thread
(herd_progress_handle), like a C wait without deadline: no hand-off to herd's thread.

Buffers: herd reads and writes the caller's memory from its coordinator thread until the handle
completes. A Handle therefore holds every object whose memory herd may touch; a Handle dropped
before it completed hands those objects to a module-level table (_orphans) that releases them
once herd is done, so memory is never freed under herd's feet.
"""

import atexit
import ctypes
import itertools
import math
import operator
import sys
import threading
import time

import numpy as np

from . import _buffers, _capi, errors
from ._capi import lib

# Longest single blocking C wait; between slices Python delivers signals (Ctrl-C).
WAIT_SLICE_MS = 100

OPS = {
    "sum": _capi.SUM,
    "average": _capi.AVERAGE,
    "min": _capi.MIN,
    "max": _capi.MAX,
    "product": _capi.PRODUCT,
}

# Unnamed submissions are named "<kind>.noname.<N>" from one counter per kind and process, so
# ranks that make their unnamed calls in the same order agree on the names (as Horovod does).
_noname = {
    kind: itertools.count()
    for kind in ("push_pull", "broadcast", "allgather", "reducescatter", "alltoall", "barrier",
                 "grouped_push_pull", "broadcast_object", "allgather_object")
}

# Handle id -> objects to keep alive, for handles dropped before they completed. Only touched
# with single dict operations, which the GIL makes atomic: __del__ may run on any thread, at any
# allocation, so it must take no lock and make no C call (a C call would overwrite this thread's
# herd_last_error() between a failing call and its exception).
_orphans = {}

_atexit_registered = False

# Handle._status of a handle whose completing wait was interrupted (see Handle.wait).
_INTERRUPTED = "interrupted"


def _reap_orphans():
    if not _orphans:
        return
    for hid in list(_orphans):
        if lib.herd_wait_handle(hid, 0) != _capi.ERR_TIMEOUT:
            _orphans.pop(hid, None)


def _at_exit():
    try:
        if not lib.herd_initialized():
            return
        if getattr(sys, "last_value", None) is not None and lib.herd_size() > 1:
            # herd_shutdown is collective: after an uncaught exception the other ranks may never
            # call it, and waiting for them would hang the job instead of ending it.
            sys.stderr.write(
                "herd: rank %d ended with an uncaught exception; not calling the collective "
                "herd.shutdown(), the MPI launcher will end the job\n" % lib.herd_rank()
            )
            return
        shutdown()
    except Exception as e:  # at exit there is nobody left to raise to
        sys.stderr.write(f"herd: shutdown at exit failed: {e}\n")


def init():
    """Initialises herd (and MPI, unless the program already did). Every rank must call it.

    Calling it again while herd is initialised does nothing. herd.shutdown() then runs at
    interpreter exit unless the program calls it first.
    """
    global _atexit_registered
    if lib.herd_initialized():
        return
    errors.check(lib.herd_init())
    if not _atexit_registered:
        # Registered here, not at import: atexit runs last-in first-out, so this runs before
        # the exit hooks of anything that initialised MPI earlier (mpi4py finalises MPI in one).
        atexit.register(_at_exit)
        _atexit_registered = True


def shutdown():
    """Collective: every rank must call it. Operations every rank submitted complete; ones some
    ranks never submitted fail with ShutdownError. Idempotent."""
    st = lib.herd_shutdown()
    err = errors.make(st) if st < 0 else None
    _reap_orphans()
    if err is not None:
        raise err


def is_initialized():
    return bool(lib.herd_initialized())


def _query(fn, what):
    v = fn()
    if v < 0:
        raise errors.make(_capi.ERR_INVALID_USAGE, f"herd.{what}() before herd.init()")
    return v


def rank():
    """This process's rank in MPI_COMM_WORLD."""
    return _query(lib.herd_rank, "rank")


def size():
    """The number of ranks."""
    return _query(lib.herd_size, "size")


def local_rank():
    """This process's rank among the ranks on its host."""
    return _query(lib.herd_local_rank, "local_rank")


def local_size():
    """The number of ranks on this host."""
    return _query(lib.herd_local_size, "local_size")


def counter_names():
    """The names of herd's event counters (see counters())."""
    names = []
    while True:
        n = lib.herd_counter_name(len(names))
        if n is None:
            return names
        names.append(_capi.text(n))


def counters():
    """herd's event counters in this process since init, as {name: int}: "ops", "rounds",
    "rounds_idle", "rounds_on_caller", "rounds_patient", "wakes_sent", "wakes_live",
    "wakes_stale", "drives", "drive_busy", "handoffs", "coordinator_signals",
    "coordinator_timeouts" (herd_counter in herd.h; docs/performance.md says what each one
    tells). Differences over a window, divided by the "ops" difference, say where the time of
    each operation went."""
    v = ctypes.c_int64(0)
    out = {}
    for name in counter_names():
        errors.check(lib.herd_counter(name.encode(), ctypes.byref(v)))
        out[name] = v.value
    return out


def version():
    """libherd's release version, "MAJOR.MINOR.PATCH"."""
    return _capi.text(lib.herd_version())


def abi_version():
    return lib.herd_abi_version()


_name_cache = {}  # str -> its checked UTF-8, for names used again and again (bounded)


def _name_bytes(name):
    if isinstance(name, str):
        b = _name_cache.get(name)
        if b is not None:
            return b
        b = name.encode("utf-8")
    elif isinstance(name, bytes):
        b = name
    else:
        raise errors.invalid_argument(f"a tensor name must be a str, got {type(name).__name__}")
    if b"\0" in b:
        raise errors.invalid_argument(f"tensor name {name!r} contains a NUL character")
    if isinstance(name, str) and len(_name_cache) < 65536:
        _name_cache[name] = b
    return b


def _submit_name(name, kind):
    if name is None:
        return f"{kind}.noname.{next(_noname[kind])}".encode()
    return _name_bytes(name)


def declare(name):
    """Declares a tensor name ahead of its first use and returns its key (an int local to this
    process). Optional; declaration order is reduction priority, so declare in the same order on
    every rank (a model's parameter order)."""
    key = ctypes.c_int64(-1)
    errors.check(lib.herd_declare_tensor(_name_bytes(name), ctypes.byref(key)))
    return key.value


def _op_code(op):
    if op.__class__ is str:
        code = OPS.get(op)  # the usual spelling: one lookup
        if code is not None:
            return code
    if isinstance(op, str):
        code = OPS.get(op.lower())
        if code is None:
            raise errors.invalid_argument(
                f"unknown op {op!r}; herd's ops are {', '.join(repr(k) for k in OPS)}")
        return code
    if isinstance(op, int) and not isinstance(op, bool):
        return op  # a herd.SUM-style code; the library checks the value
    raise errors.invalid_argument(f"op must be a str or a herd op code, got {type(op).__name__}")


def _handle_out(hid_ref, st):
    if st < 0:
        raise errors.make(st)
    return hid_ref.value


class Handle:
    """One submitted operation (push_pull, broadcast, allgather, reducescatter, alltoall,
    barrier, join).

    poll() says whether it has completed; wait() blocks until it does, releases it and returns
    the result (or raises the operation's HerdError). A Handle keeps the input and output alive
    until it completes. As a context manager it waits on leaving the block (unless the block
    raised). Dropping a handle without waiting is safe: its buffers stay alive until herd is done
    with them, and herd releases it later.
    """

    __slots__ = ("_id", "_name", "_result", "_keep", "_status", "_lock", "_finish",
                 "__weakref__")

    def __init__(self, hid, name, result, keep, finish=None):
        self._id = hid
        self._name = name
        self._result = result
        self._keep = keep
        self._finish = finish  # turns the C results into the Python result, after success
        self._status = None  # the final status once waited; None while the C handle is live
        self._lock = threading.Lock()

    @property
    def id(self):
        """The C handle (herd_handle_t)."""
        return self._id

    @property
    def name(self):
        """The tensor name, generated ("push_pull.noname.N") for unnamed submissions."""
        n = self._name  # kept as the bytes submitted: decoding costs on every call
        return n.decode("utf-8", "replace") if isinstance(n, bytes) else n

    def poll(self):
        """True once the operation has completed (successfully or not); never blocks."""
        if self._status is not None:
            return True
        st = lib.herd_poll_handle(self._id)
        if st == _capi.INPROGRESS:
            return False
        if st == _capi.ERR_NOT_FOUND:
            err = errors.make(st)
            with self._lock:  # another thread's wait() may have released it just now
                if self._status is None:
                    raise err
        return True

    @property
    def done(self):
        return self.poll()

    def wait(self, timeout=None):
        """Blocks until the operation completes and returns its result: the output array of a
        push_pull, the array of a broadcast, the gathered/scattered array of allgather and
        reducescatter, (array, received_splits) of alltoall, None for a barrier, the last rank
        to join for join. Raises the operation's HerdError if it failed (StalledError when the
        stall inspector timed it out: some ranks never submitted it).

        timeout: seconds, None to wait forever. When it passes, HerdTimeoutError is raised and
        the handle stays valid (wait again or poll). Waiting on a handle that was already waited
        on raises NotFoundError.
        """
        deadline = None
        if timeout is not None:
            if timeout < 0:
                raise errors.invalid_argument(f"timeout must be >= 0 or None, got {timeout}")
            deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._status is _INTERRUPTED:
                    raise errors.make(
                        _capi.ERR_NOT_FOUND,
                        f"'{self.name}' completed during a wait that a signal interrupted; "
                        "its status was lost")
                if self._status is not None:
                    raise errors.make(
                        _capi.ERR_NOT_FOUND,
                        f"the handle of '{self.name}' was already waited on")
                slice_ms = WAIT_SLICE_MS
                if deadline is not None:
                    left = deadline - time.monotonic()
                    slice_ms = max(0, min(WAIT_SLICE_MS, math.ceil(left * 1000)))
                try:
                    if deadline is None:
                        # Drives the rounds this handle needs on this thread, as a C wait
                        # without deadline does, but returns every slice for signals.
                        st = lib.herd_progress_handle(self._id, slice_ms)
                        if st == _capi.INPROGRESS:
                            st = _capi.ERR_TIMEOUT
                    else:
                        st = lib.herd_wait_handle(self._id, slice_ms)
                except BaseException:
                    # Python raises a pending KeyboardInterrupt right after the C call returns,
                    # dropping its result: if that call completed and released the handle, the
                    # operation's status is lost, but its buffers are free to go.
                    if lib.herd_poll_handle(self._id) == _capi.ERR_NOT_FOUND:
                        self._status = _INTERRUPTED
                        self._result = self._keep = None
                    raise
                if st == _capi.ERR_TIMEOUT:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise errors.make(
                            _capi.ERR_TIMEOUT,
                            f"'{self.name}' did not complete within {timeout} s; the handle "
                            "stays valid: wait again or poll")
                    continue  # back to the interpreter for a moment: signals are handled here
                err = errors.make(st) if st < 0 else None
                self._status = st
                result, self._result, self._keep = self._result, None, None
            if err is not None:
                raise err
            if self._finish is not None:
                return self._finish(result)
            return result

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self._status is None:
            self.wait()
        return False

    def __del__(self):
        try:
            if self._status is None and self._keep is not None:
                _orphans[self._id] = self._keep
        except Exception:  # interpreter teardown: module globals may already be gone
            pass

    def __repr__(self):
        state = "live" if self._status is None else f"done({self._status})"
        return f"<herd.Handle {self._id} '{self.name}' {state}>"


def _wait_sync(hid, result, keep, finish):
    """Handle(...).wait() for an operation no other code holds a handle to (the synchronous
    calls), without building the Handle: their latency path. Drives the rounds the operation
    needs on this thread and returns to Python every WAIT_SLICE_MS, where signals are handled;
    an exception there (Ctrl-C) leaves the operation in flight with its buffers kept alive
    until it completes, as a dropped Handle does."""
    try:
        st = lib.herd_progress_handle(hid, WAIT_SLICE_MS)
        while st == _capi.INPROGRESS:
            st = lib.herd_progress_handle(hid, WAIT_SLICE_MS)
    except BaseException:
        if lib.herd_poll_handle(hid) != _capi.ERR_NOT_FOUND:
            _orphans[hid] = keep
        raise
    if st < 0:
        raise errors.make(st)
    return result if finish is None else finish(result)


def push_pull_async(array, name=None, op="sum", out=None, dtype=None, prescale=1.0,
                    postscale=1.0):
    """Submits an allreduce of `array` across all ranks and returns a Handle.

    array: a numpy array (C-contiguous), a writable or read-only buffer-protocol object
        (bytearray, array.array, memoryview), an __array_interface__ / DLPack object, or device
        memory (__cuda_array_interface__ / DLPack).
    name: the tensor's name, the same on every rank. Without one, herd names the call
        "push_pull.noname.<N>" from a per-process counter: ranks agree only if they make their
        unnamed calls in the same order (and not from several threads).
    op: "sum", "average", "min", "max" or "product" (or herd.SUM...). Integer averages truncate
        toward zero.
    out: where the result goes: None allocates a new numpy array like `array`; `out=array`
        reduces in place; any other writable buffer with the same dtype and element count.
    dtype: overrides the element type, for buffers whose own type says nothing (bfloat16 bits
        in a uint16 array: dtype="bfloat16"). The element size must match.
    prescale, postscale: each rank's input is multiplied by prescale before the reduction and
        the result by postscale after it (after AVERAGE's division), in float32 for float16,
        bfloat16 and float32, float64 for float64; integers in float64, truncated toward zero.
        Device memory: float sums and averages only, both factors folded into NCCL's PreMulSum.

    A scalar (numpy scalar such as a loss value, Python int or float) works as `array`; with
    out=None the result is then a numpy scalar too.
    `array` and `out` must not change until the handle completes; the handle keeps them alive.
    The Handle's wait() returns `out` (the allocated array when out is None).
    """
    return _push_pull(array, name, op, out, dtype, prescale, postscale, False)


def _push_pull(array, name, op, out, dtype, prescale, postscale, sync):
    _reap_orphans()
    code = _op_code(op)
    prescale, postscale = _factor(prescale, "prescale"), _factor(postscale, "postscale")
    if out is None and _is_scalar(array):
        # A scalar (a loss value) has no memory to share: a private 0-d copy is reduced in
        # place, with no second array for the result.
        result = np.array(array)
        send = recv = _buffers.resolve(result, dtype, "array")
    elif out is None:
        send = _buffers.resolve(array, dtype, "array")
        result = _buffers.allocate_like(send)
        recv = _buffers.resolve(result, send.dtype, "out")
    elif out is array:
        send = recv = _buffers.resolve(array, dtype, "array")
        result = out
    else:
        send = _buffers.resolve(array, dtype, "array")
        result = out
        recv = _buffers.resolve(out, dtype, "out")
        if recv.dtype != send.dtype:
            raise errors.invalid_argument(
                f"out has dtype {_buffers.DTYPE_NAMES[recv.dtype]}, array has "
                f"{_buffers.DTYPE_NAMES[send.dtype]}")
        if recv.count != send.count:
            raise errors.invalid_argument(
                f"out has {recv.count} elements, array has {send.count}")
        if recv.device != send.device:
            raise errors.invalid_argument(
                f"out is on device {recv.device}, array on device {send.device}")
        if (recv.ptr != send.ptr and recv.ptr < send.ptr + send.nbytes
                and send.ptr < recv.ptr + recv.nbytes):
            raise errors.invalid_argument("out partly overlaps array; use out=array for in place")
    if recv.readonly:
        what = "array" if recv is send else "out"
        raise errors.invalid_argument(f"{what} is read-only, but herd writes the result into it")
    name_b = _submit_name(name, "push_pull")
    hid = ctypes.c_int64(0)
    _set_stream(send)
    if prescale == 1.0 and postscale == 1.0:
        st = lib.herd_push_pull(name_b, send.ptr or None, recv.ptr or None, send.count,
                                send.dtype, code, send.device, ctypes.byref(hid))
    else:
        st = lib.herd_push_pull_scaled(name_b, send.ptr or None, recv.ptr or None, send.count,
                                       send.dtype, code, prescale, postscale, send.device,
                                       ctypes.byref(hid))
    finish = _as_scalar if out is None and _is_scalar(array) else None
    keep = (send.keep, recv.keep, array, out, result)
    if sync:
        return _wait_sync(_handle_out(hid, st), result, keep, finish)
    return Handle(_handle_out(hid, st), name_b, result, keep, finish)


_SLOW = object()
_push_pull_sync = lib.herd_push_pull_sync
_progress = lib.herd_progress_handle


def _push_pull_fast(array, name, op, out):
    """push_pull's latency path, for what loss and metric averaging pass: a C-contiguous numpy
    array reduced in place or into a new array, or a numpy scalar, with no dtype override and
    no scaling. Submits and drives the operation in one call (herd_push_pull_sync), without a
    Buffer. _SLOW for anything else (before a name is used up), which push_pull then checks and
    runs, or reports, the general way."""
    scalar = False
    if array.__class__ is not np.ndarray:
        if not isinstance(array, np.generic) or out is not None:
            return _SLOW
        array = np.array(array)  # a private 0-d copy, reduced in place
        scalar = True
        out = array
    code = _buffers._numpy_codes.get(array.dtype)
    flags = array.flags
    if code is None or not flags.c_contiguous or not flags.aligned or op.__class__ is not str:
        return _SLOW
    opcode = OPS.get(op)
    if opcode is None:
        return _SLOW
    send = _buffers.data_ptr(array) or None
    if out is None:
        result = np.empty(array.shape, array.dtype)
        recv = _buffers.data_ptr(result) or None
    elif flags.writeable:
        result, recv = array, send
    else:
        return _SLOW  # the general path says which buffer is read-only
    name_b = _submit_name(name, "push_pull")
    hid = ctypes.c_int64(0)
    try:
        st = _push_pull_sync(name_b, send, recv, array.size, code, opcode, _capi.DEVICE_CPU,
                             WAIT_SLICE_MS, ctypes.byref(hid))
        while st == _capi.INPROGRESS:
            st = _progress(hid.value, WAIT_SLICE_MS)
    except BaseException:  # Ctrl-C between slices: the operation goes on, its buffers kept
        if hid.value and lib.herd_poll_handle(hid.value) != _capi.ERR_NOT_FOUND:
            _orphans[hid.value] = (array, result)
        raise
    if st < 0:
        raise errors.make(st)
    return result[()] if scalar else result


def _set_stream(buf):
    """Tells herd which CUDA stream produced a GPU buffer, so it never reads the data early."""
    if buf.device >= 0:
        lib.herd_set_cuda_stream(ctypes.c_void_p(buf.stream or None))


def push_pull(array, name=None, op="sum", out=None, dtype=None, timeout=None, prescale=1.0,
              postscale=1.0):
    """Synchronous push_pull_async(...).wait(timeout): returns the result (see push_pull_async).
    On timeout the operation stays in flight and its buffers stay alive until it completes."""
    if timeout is None:
        if (dtype is None and prescale.__class__ is float and prescale == 1.0
                and postscale.__class__ is float and postscale == 1.0 and not _orphans
                and (out is None or out is array)):
            result = _push_pull_fast(array, name, op, out)
            if result is not _SLOW:
                return result
        return _push_pull(array, name, op, out, dtype, prescale, postscale, True)
    return push_pull_async(array, name=name, op=op, out=out, dtype=dtype, prescale=prescale,
                           postscale=postscale).wait(timeout)


def broadcast_async(array, root, name=None, dtype=None):
    """Submits a broadcast of `array` from rank `root` into `array` on every other rank and
    returns a Handle; its wait() returns `array`.

    `array` must be writable on every rank (the root included, so that a read-only buffer fails
    alike everywhere) and have the same element count and dtype on all ranks. Naming rules are
    push_pull's: unnamed calls are "broadcast.noname.<N>" from a per-process counter.
    """
    _reap_orphans()
    try:
        root = operator.index(root)
    except TypeError:
        raise errors.invalid_argument(
            f"root must be an int rank, got {type(root).__name__}") from None
    buf = _buffers.resolve(array, dtype, "array")
    if buf.readonly:
        raise errors.invalid_argument(
            "array is read-only, but broadcast writes into it on every rank but the root")
    name_b = _submit_name(name, "broadcast")
    hid = ctypes.c_int64(0)
    _set_stream(buf)
    st = lib.herd_broadcast(name_b, buf.ptr or None, buf.count, buf.dtype, root, buf.device,
                            ctypes.byref(hid))
    return Handle(_handle_out(hid, st), name_b, array,
                  (buf.keep, array))


def broadcast(array, root, name=None, dtype=None, timeout=None):
    """Synchronous broadcast_async(...).wait(timeout): returns `array`, now equal to root's."""
    return broadcast_async(array, root, name=name, dtype=dtype).wait(timeout)


# ---- helpers for the collectives beyond push_pull and broadcast ------------------------------

def _is_scalar(obj):
    return isinstance(obj, (np.generic, int, float)) and not isinstance(obj, bool)


def _as_scalar(result):
    return result[()]


def _factor(value, what):
    if value.__class__ is float and value == 1.0:
        return value  # the default, on every call: skip the checks
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise errors.invalid_argument(
            f"{what} must be a number, got {type(value).__name__}") from None
    if not math.isfinite(f):
        raise errors.invalid_argument(f"{what} must be finite, got {value!r}")
    return f


def _host_array(array, dtype, what):
    """A resolved host buffer and the numpy view over it (the collectives below are host-only
    and need the shape)."""
    buf = _buffers.resolve(array, dtype, what)
    if buf.device != _capi.DEVICE_CPU or buf.array is None:
        raise errors.make(
            _capi.ERR_NOT_SUPPORTED,
            f"{what} is device memory; herd's allgather, reducescatter and alltoall take host "
            "memory so far (GPU: push_pull and broadcast)")
    return buf, buf.array


def _rows(arr):
    """(rows, elements per row, trailing shape) of an array split along axis 0; a 0-d array
    is one row of one element."""
    if arr.ndim == 0:
        return 1, 1, ()
    trailing = tuple(arr.shape[1:])
    row = 1
    for n in trailing:
        row *= n
    return int(arr.shape[0]), max(row, 1), trailing


class _HerdMemory:
    """Owns a buffer herd allocated for a variable-size result; frees it with the array."""

    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        try:
            if self.ptr:
                lib.herd_free(self.ptr, _capi.DEVICE_CPU)
                self.ptr = None
        except Exception:  # interpreter teardown
            pass


def _adopt(ptr, count, storage, shape):
    """A numpy array of `count` elements over herd-allocated memory at `ptr`, freed with it."""
    if not count:
        if ptr:
            lib.herd_free(ptr, _capi.DEVICE_CPU)
        return np.empty(shape, dtype=storage)
    raw = (ctypes.c_char * (count * storage.itemsize)).from_address(ptr)
    raw._herd_owner = _HerdMemory(ptr)
    return np.frombuffer(raw, dtype=storage).reshape(shape)


def _submit_done(hid, st, name_b, keep, finish, result=None):
    return Handle(_handle_out(hid, st), name_b, result, keep, finish)


# ---- allgather ----------------------------------------------------------------------------------

def allgather_async(array, name=None, dtype=None):
    """Submits an allgather and returns a Handle whose wait() returns the concatenation of every
    rank's `array` along axis 0, in rank order, as a new numpy array.

    array: host memory (numpy array, buffer, DLPack/__array_interface__ object, scalar). The
        first dimension may differ between ranks; the rest of the shape (the row) and the dtype
        must agree (else MismatchError on every rank). A 0-d array or scalar counts as one row.
    The result has shape (sum of every rank's rows, *array.shape[1:]) and array's dtype.
    Raises InvalidArgumentError for a bad array, NotSupportedError for device memory.
    """
    _reap_orphans()
    buf, arr = _host_array(array, dtype, "array")
    rows, row, trailing = _rows(arr)
    return _allgatherv(buf, arr.dtype, row, _submit_name(name, "allgather"), (array,),
                       lambda data, counts: data.reshape((data.size // row,) + trailing))


def _allgatherv(buf, storage, row, name_b, keep, finish):
    """Submits herd_allgatherv of `buf` (rows of `row` elements) and returns a Handle whose
    wait() returns finish(data, counts): every rank's elements in rank order as a flat array of
    `storage` over herd's memory, and each rank's element count."""
    n = size()
    out_ptr = ctypes.c_void_p(0)
    counts = (ctypes.c_int64 * n)()
    hid = ctypes.c_int64(0)
    st = lib.herd_allgatherv(name_b, buf.ptr or None, buf.count, row, buf.dtype, buf.device,
                             ctypes.byref(out_ptr), counts, ctypes.byref(hid))

    def done(_):
        total = sum(counts)
        return finish(_adopt(out_ptr.value, total, storage, (total,)), list(counts))

    return _submit_done(hid, st, name_b, (buf.keep, out_ptr, counts) + keep, done)


def allgather(array, name=None, dtype=None, timeout=None):
    """Synchronous allgather_async(...).wait(timeout): every rank's rows, concatenated."""
    return allgather_async(array, name=name, dtype=dtype).wait(timeout)


# ---- reducescatter ------------------------------------------------------------------------------

def reducescatter_async(array, op="average", name=None, dtype=None):
    """Submits a reduce-scatter and returns a Handle whose wait() returns this rank's part.

    Every rank passes an array of the same shape and dtype; it is reduced element-wise over the
    ranks with `op` (default "average", as Horovod) and split along axis 0 as Horovod splits it:
    with R rows and N ranks, rank r gets R // N rows, plus one when r < R % N, in rank order.
    The result has shape (that many rows, *array.shape[1:]). The input is never written.
    Raises InvalidArgumentError for a 0-d array or a bad op, MismatchError when ranks disagree.
    """
    _reap_orphans()
    code = _op_code(op)
    buf, arr = _host_array(array, dtype, "array")
    if arr.ndim == 0:
        raise errors.invalid_argument("reducescatter needs an array with at least one dimension")
    rows, row, trailing = _rows(arr)
    mine = lib.herd_reducescatter_rows(rows, size(), rank())
    result = np.empty((mine,) + trailing, dtype=arr.dtype)
    recv = _buffers.resolve(result, _buffers.DTYPE_NAMES[buf.dtype], "out")
    name_b = _submit_name(name, "reducescatter")
    hid = ctypes.c_int64(0)
    st = lib.herd_reducescatterv(name_b, buf.ptr or None, recv.ptr or None, rows, row, buf.dtype,
                                 code, buf.device, ctypes.byref(hid))
    return _submit_done(hid, st, name_b, (buf.keep, recv.keep, array, result), None, result)


def reducescatter(array, op="average", name=None, dtype=None, timeout=None):
    """Synchronous reducescatter_async(...).wait(timeout): this rank's rows of the reduction."""
    return reducescatter_async(array, op=op, name=name, dtype=dtype).wait(timeout)


# ---- alltoall -----------------------------------------------------------------------------------

def alltoall_async(array, splits=None, name=None, dtype=None):
    """Submits an all-to-all and returns a Handle whose wait() returns (received,
    received_splits).

    array: host memory whose rows (axis 0) go out in rank order: splits[0] rows to rank 0,
        splits[1] to rank 1, ... `splits` (one non-negative int per rank, summing to the row
        count) defaults to equal parts, which needs the rows to divide by the number of ranks.
    received: the rows every rank sent to this one, in rank order, shape (sum of
        received_splits, *array.shape[1:]); received_splits: a numpy int64 array, one entry per
        rank. Trailing shape and dtype must agree across ranks.
    Raises InvalidArgumentError for bad splits, MismatchError when ranks disagree.
    """
    _reap_orphans()
    buf, arr = _host_array(array, dtype, "array")
    if arr.ndim == 0:
        raise errors.invalid_argument("alltoall needs an array with at least one dimension")
    rows, row, trailing = _rows(arr)
    n = size()
    if splits is None:
        if rows % n:
            raise errors.invalid_argument(
                f"alltoall of {rows} rows over {n} ranks needs splits= (rows per destination): "
                "they do not divide evenly")
        split_list = [rows // n] * n
    else:
        split_list = [int(v) for v in np.asarray(splits).reshape(-1)]
        if len(split_list) != n:
            raise errors.invalid_argument(
                f"splits has {len(split_list)} entries; it needs one per rank ({n})")
        if any(v < 0 for v in split_list) or sum(split_list) != rows:
            raise errors.invalid_argument(
                f"splits {split_list} must be non-negative and sum to the {rows} rows of array")
    sendcounts = (ctypes.c_int64 * n)(*[v * row for v in split_list])
    recvcounts = (ctypes.c_int64 * n)()
    out_ptr = ctypes.c_void_p(0)
    name_b = _submit_name(name, "alltoall")
    hid = ctypes.c_int64(0)
    st = lib.herd_alltoallv(name_b, buf.ptr or None, sendcounts, row, buf.dtype, buf.device,
                            ctypes.byref(out_ptr), recvcounts, ctypes.byref(hid))
    storage = arr.dtype

    def finish(_):
        total = sum(recvcounts)
        received = _adopt(out_ptr.value, total, storage, (total // row,) + trailing)
        return received, np.array([c // row for c in recvcounts], dtype=np.int64)

    return _submit_done(hid, st, name_b, (buf.keep, array, sendcounts, recvcounts, out_ptr),
                        finish)


def alltoall(array, splits=None, name=None, dtype=None, timeout=None):
    """Synchronous alltoall_async(...).wait(timeout): (received, received_splits)."""
    return alltoall_async(array, splits=splits, name=name, dtype=dtype).wait(timeout)


# ---- barrier and join ---------------------------------------------------------------------------

def barrier_async(name=None):
    """Submits a barrier; the Handle completes once every rank has submitted it."""
    _reap_orphans()
    name_b = _submit_name(name, "barrier")
    hid = ctypes.c_int64(0)
    st = lib.herd_barrier(name_b, ctypes.byref(hid))
    return _submit_done(hid, st, name_b, (), None, None)


def barrier(name=None, timeout=None):
    """Returns once every rank has called barrier (with the same name, if one is given)."""
    if timeout is not None:
        barrier_async(name).wait(timeout)
        return
    _reap_orphans()
    hid = ctypes.c_int64(0)
    st = lib.herd_barrier(_submit_name(name, "barrier"), ctypes.byref(hid))
    _wait_sync(_handle_out(hid, st), None, (), None)


def join_async(device=_capi.DEVICE_CPU):
    """Submits a join (see join); the Handle's wait() returns the last rank to join."""
    _reap_orphans()
    last = ctypes.c_int(-1)
    hid = ctypes.c_int64(0)
    st = lib.herd_join(int(device), ctypes.byref(last), ctypes.byref(hid))
    return Handle(_handle_out(hid, st), "herd.join", None, (last,), lambda _: last.value)


def join(device=_capi.DEVICE_CPU, timeout=None):
    """For uneven data: a rank that has run out of batches calls join() and from then on takes
    part in every operation the other ranks still submit (contributing zeros, the op's identity
    or nothing, receiving into scratch) until every rank has joined. Returns the last rank to
    join. While a rank has joined, AVERAGE divides by the ranks that have not; a broadcast from
    a joined root fails on every rank. Call it with nothing of this rank in flight (else
    InvalidUsageError), and submit nothing until it returns."""
    return join_async(device).wait(timeout)


# ---- groups --------------------------------------------------------------------------------------

def grouped_push_pull_async(arrays, op="sum", names=None, prescale=1.0, postscale=1.0,
                            dtype=None):
    """Submits push_pulls of every array in `arrays` as one group (herd_group_start/end): every
    rank negotiates them as a unit, all ready together, fused where they can be. Returns a list
    of Handles, one per array (each wait() returns a new array with the reduction).
    names: one name per array; without names, "grouped_push_pull.noname.<N>.<i>".
    If one submission fails, none of the group is sent and the error is raised."""
    arrays = list(arrays)
    if names is None:
        base = f"grouped_push_pull.noname.{next(_noname['grouped_push_pull'])}"
        names = [f"{base}.{i}" for i in range(len(arrays))]
    else:
        names = list(names)
        if len(names) != len(arrays):
            raise errors.invalid_argument(
                f"names has {len(names)} entries for {len(arrays)} arrays")
    # Python-side checks first: a failure from here on is one the C group records, so that
    # herd_group_end submits none of the group.
    _op_code(op)
    _factor(prescale, "prescale")
    _factor(postscale, "postscale")
    for a in arrays:
        _buffers.resolve(a, dtype, "array")
    handles = []
    errors.check(lib.herd_group_start())
    try:
        for a, nm in zip(arrays, names):
            handles.append(push_pull_async(a, name=nm, op=op, dtype=dtype, prescale=prescale,
                                           postscale=postscale))
    except BaseException:
        lib.herd_group_end()  # a member failed in C: the group is not submitted
        for h in handles:
            try:
                h.wait()  # completed with InvalidUsageError; releases the handle
            except errors.HerdError:
                pass
        raise
    errors.check(lib.herd_group_end())
    return handles


def grouped_push_pull(arrays, op="sum", names=None, prescale=1.0, postscale=1.0, dtype=None,
                      timeout=None):
    """Synchronous grouped_push_pull_async: a list with the reduction of every array."""
    return [h.wait(timeout) for h in grouped_push_pull_async(
        arrays, op=op, names=names, prescale=prescale, postscale=postscale, dtype=dtype)]


# ---- Python objects ------------------------------------------------------------------------------

def broadcast_object(obj, root=0, name=None):
    """Returns root's `obj` on every rank (pickled on the root, unpickled everywhere else; the
    root gets its own object back). Two broadcasts: the size, then the bytes."""
    import pickle

    base = name if name is not None else \
        f"broadcast_object.noname.{next(_noname['broadcast_object'])}"
    me = rank()
    payload = pickle.dumps(obj) if me == root else b""
    length = np.array([len(payload)], dtype=np.int64)
    broadcast(length, root, name=f"{base}.len")
    data = np.frombuffer(payload, dtype=np.uint8).copy() if me == root else \
        np.empty(int(length[0]), dtype=np.uint8)
    broadcast(data, root, name=f"{base}.data")
    return obj if me == root else pickle.loads(data.tobytes())


def allgather_object(obj, name=None):
    """Returns a list with every rank's `obj`, in rank order (pickled, gathered, unpickled)."""
    import pickle

    base = name if name is not None else \
        f"allgather_object.noname.{next(_noname['allgather_object'])}"
    payload = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)

    def unpickle(data, counts):
        objs, off = [], 0
        for c in counts:
            objs.append(pickle.loads(data[off:off + c].tobytes()))
            off += c
        return objs

    buf = _buffers.resolve(payload, None, "object")
    return _allgatherv(buf, payload.dtype, 1, base.encode(), (payload,), unpickle).wait()
