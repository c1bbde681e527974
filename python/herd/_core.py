"""herd's Python API: lifetime, queries, push_pull/broadcast and the Handle they return.

Threads: herd's C calls release the GIL (ctypes.CDLL does), so a rank's other Python threads
run while one waits. Blocking waits are cut into WAIT_SLICE_MS slices, so a KeyboardInterrupt
reaches the program within one slice; a handle whose wait was interrupted stays valid.

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
_noname = {"push_pull": itertools.count(), "broadcast": itertools.count()}

# Handle id -> objects to keep alive, for handles dropped before they completed. Only touched
# with single dict operations, which the GIL makes atomic: __del__ may run on any thread, at any
# allocation, so it must take no lock and make no C call (a C call would overwrite this thread's
# herd_last_error() between a failing call and its exception).
_orphans = {}

_atexit_registered = False

# Handle._status of a handle whose completing wait was interrupted (see Handle.wait).
_INTERRUPTED = "interrupted"


def _reap_orphans():
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


def version():
    """libherd's release version, "MAJOR.MINOR.PATCH"."""
    return _capi.text(lib.herd_version())


def abi_version():
    return lib.herd_abi_version()


def _name_bytes(name):
    if isinstance(name, str):
        b = name.encode("utf-8")
    elif isinstance(name, bytes):
        b = name
    else:
        raise errors.invalid_argument(f"a tensor name must be a str, got {type(name).__name__}")
    if b"\0" in b:
        raise errors.invalid_argument(f"tensor name {name!r} contains a NUL character")
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
    """One submitted push_pull or broadcast.

    poll() says whether it has completed; wait() blocks until it does, releases it and returns
    the result (or raises the operation's HerdError). A Handle keeps the input and output alive
    until it completes. As a context manager it waits on leaving the block (unless the block
    raised). Dropping a handle without waiting is safe: its buffers stay alive until herd is done
    with them, and herd releases it later.
    """

    __slots__ = ("_id", "_name", "_result", "_keep", "_status", "_lock", "__weakref__")

    def __init__(self, hid, name, result, keep):
        self._id = hid
        self._name = name
        self._result = result
        self._keep = keep
        self._status = None  # the final status once waited; None while the C handle is live
        self._lock = threading.Lock()

    @property
    def id(self):
        """The C handle (herd_handle_t)."""
        return self._id

    @property
    def name(self):
        """The tensor name, generated ("push_pull.noname.N") for unnamed submissions."""
        return self._name

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
        push_pull, the array of a broadcast. Raises the operation's HerdError if it failed.

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
                        f"'{self._name}' completed during a wait that a signal interrupted; "
                        "its status was lost")
                if self._status is not None:
                    raise errors.make(
                        _capi.ERR_NOT_FOUND,
                        f"the handle of '{self._name}' was already waited on")
                slice_ms = WAIT_SLICE_MS
                if deadline is not None:
                    left = deadline - time.monotonic()
                    slice_ms = max(0, min(WAIT_SLICE_MS, math.ceil(left * 1000)))
                try:
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
                            f"'{self._name}' did not complete within {timeout} s; the handle "
                            "stays valid: wait again or poll")
                    continue  # back to the interpreter for a moment: signals are handled here
                err = errors.make(st) if st < 0 else None
                self._status = st
                result, self._result, self._keep = self._result, None, None
            if err is not None:
                raise err
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
        return f"<herd.Handle {self._id} '{self._name}' {state}>"


def push_pull_async(array, name=None, op="sum", out=None, dtype=None):
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

    `array` and `out` must not change until the handle completes; the handle keeps them alive.
    The Handle's wait() returns `out` (the allocated array when out is None).
    """
    _reap_orphans()
    code = _op_code(op)
    send = _buffers.resolve(array, dtype, "array")
    if out is None:
        result = _buffers.allocate_like(send)
        recv = _buffers.resolve(result, _buffers.DTYPE_NAMES[send.dtype], "out")
    elif out is array:
        result, recv = out, send
    else:
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
    st = lib.herd_push_pull(name_b, send.ptr or None, recv.ptr or None, send.count, send.dtype,
                            code, send.device, ctypes.byref(hid))
    return Handle(_handle_out(hid, st), name_b.decode("utf-8", "replace"), result,
                  (send.keep, recv.keep, array, out, result))


def _set_stream(buf):
    """Tells herd which CUDA stream produced a GPU buffer, so it never reads the data early."""
    if buf.device >= 0:
        lib.herd_set_cuda_stream(ctypes.c_void_p(buf.stream or None))


def push_pull(array, name=None, op="sum", out=None, dtype=None, timeout=None):
    """Synchronous push_pull_async(...).wait(timeout): returns the result (see push_pull_async).
    On timeout the operation stays in flight and its buffers stay alive until it completes."""
    return push_pull_async(array, name=name, op=op, out=out, dtype=dtype).wait(timeout)


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
    return Handle(_handle_out(hid, st), name_b.decode("utf-8", "replace"), array,
                  (buf.keep, array))


def broadcast(array, root, name=None, dtype=None, timeout=None):
    """Synchronous broadcast_async(...).wait(timeout): returns `array`, now equal to root's."""
    return broadcast_async(array, root, name=name, dtype=dtype).wait(timeout)
