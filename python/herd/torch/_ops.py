"""herd.torch's collectives on torch tensors: pointers from data_ptr() straight into libherd.

Every op resolves a tensor to (pointer, element count, herd dtype, device) and calls herd's C
entry points through the ctypes prototypes herd._capi declared at import; nothing is compiled
against torch, so any torch release works. A submission returns a Handle; synchronize(handle)
waits and returns the output tensor, poll(handle) says whether it is done.

Names: like Horovod, an op's tensor is named "<kind>.<name>" ("allreduce.fc.weight"), or
"<kind>.noname.<N>" from a per-process counter per kind when unnamed, so ranks agree as long as
they make their unnamed calls in the same order.

Shapes: herd checks counts and dtypes across ranks; a named tensor's shape is also compared once,
at its first submission, by a small MAX allreduce of its dims and their negations submitted
beside it, so two ranks holding (2, 3) and (3, 2) get a MismatchError naming the tensor instead
of silently mixing elements.

CUDA tensors: the current stream of the tensor's device is the producer stream
(herd_set_cuda_stream), and synchronize() makes the current stream wait for the result
(herd_handle_stream_wait) instead of blocking the host until the data has arrived.
"""

import ctypes
import inspect
import itertools
import threading

import torch

import herd
from herd import _capi, _core, errors
from herd._capi import lib
from herd._horovod import _HERD_OP, _herd_op, _op_of
from herd._horovod import Adasum, Average, Max, Min, Product, Sum, global_process_set  # noqa: F401

_OP_NAMES = {Average: "average", Sum: "sum", Min: "min", Max: "max", Product: "product"}

_DTYPE = {
    torch.uint8: _capi.UINT8,
    torch.int8: _capi.INT8,
    torch.int32: _capi.INT32,
    torch.int64: _capi.INT64,
    torch.float16: _capi.FLOAT16,
    torch.bfloat16: _capi.BFLOAT16,
    torch.float32: _capi.FLOAT32,
    torch.float64: _capi.FLOAT64,
}

# herd.push_pull gains prescale=/postscale= with issue 9; until then scaling happens here, on the
# tensor, before and after the reduction (the same arithmetic Horovod's core does).
_NATIVE_SCALE = "prescale" in inspect.signature(herd.push_pull_async).parameters

_noname = {k: itertools.count() for k in ("allreduce", "grouped_allreduce", "broadcast",
                                          "allgather", "alltoall", "reducescatter")}
_noname_lock = threading.Lock()
_shape_checked = set()


def _check_process_set(process_set):
    if process_set is not global_process_set and process_set is not None:
        raise errors.make(_capi.ERR_NOT_SUPPORTED,
                          "herd.torch has one process set, all ranks (global_process_set)")


def _full_name(name, kind):
    """(bytes, str, named?) for an op's tensor name."""
    if name is None:
        with _noname_lock:
            n = next(_noname[kind])
        s = f"{kind}.noname.{n}"
        return s.encode(), s, False
    if not isinstance(name, str):
        raise errors.invalid_argument(f"a tensor name must be a str, got {type(name).__name__}")
    s = f"{kind}.{name}"
    b = s.encode("utf-8")
    if b"\0" in b:
        raise errors.invalid_argument(f"tensor name {name!r} contains a NUL character")
    return b, s, True


def _device_of(t, what):
    dev = t.device
    if dev.type == "cpu":
        return _capi.DEVICE_CPU
    if dev.type == "cuda":
        return dev.index if dev.index is not None else torch.cuda.current_device()
    raise errors.make(_capi.ERR_NOT_SUPPORTED,
                      f"{what} lives on a {dev.type} device; herd takes CPU and CUDA tensors")


def _dtype_of(t, what):
    code = _DTYPE.get(t.dtype)
    if code is None:
        raise errors.invalid_argument(
            f"{what} has dtype {t.dtype}, which herd does not reduce; herd takes uint8 int8 int32 "
            "int64 float16 bfloat16 float32 float64 (cast it, e.g. .to(torch.float32))")
    return code


def _check_tensor(t, what, in_place):
    if not isinstance(t, torch.Tensor):
        raise errors.invalid_argument(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_sparse:
        raise errors.invalid_argument(f"{what} is sparse; pass tensor.to_dense()")
    if in_place and not t.is_contiguous():
        raise errors.invalid_argument(
            f"{what} is not contiguous (shape {tuple(t.shape)}, strides {t.stride()}); herd "
            "works in place, so pass tensor.contiguous() and use that tensor")


def _set_stream(t, dev):
    if dev >= 0:
        lib.herd_set_cuda_stream(ctypes.c_void_p(torch.cuda.current_stream(t.device).cuda_stream))


def _scale_(t, factor):
    """t *= factor in place; integers truncate toward zero like Horovod's ScaleBuffer."""
    if factor == 1.0:
        return t
    if t.is_floating_point():
        return t.mul_(factor)
    return t.copy_(t.double().mul_(factor).trunc_())


def _shape_vector(shape):
    # [ndim, d0..d7, hash of dims past the 8th] and its negation: one MAX gives max and -min.
    dims = list(shape)
    v = [len(dims)] + dims[:8] + [0] * (8 - min(len(dims), 8))
    v.append(hash(tuple(dims[8:])) & 0x7FFFFFFFFFFFFFFF if len(dims) > 8 else 0)
    return torch.tensor(v + [-x for x in v], dtype=torch.int64)


class _ShapeCheck:
    __slots__ = ("handle", "vec", "shape", "name")

    def __init__(self, shape, name_b, name):
        self.vec = _shape_vector(shape)
        self.shape = tuple(shape)
        self.name = name
        hid = ctypes.c_int64(0)
        st = lib.herd_push_pull(name_b + b"#shape", self.vec.data_ptr(), self.vec.data_ptr(),
                                self.vec.numel(), _capi.INT64, _capi.MAX, _capi.DEVICE_CPU,
                                ctypes.byref(hid))
        if st < 0:
            raise errors.make(st)
        self.handle = _core.Handle(hid.value, name + "#shape", self.vec, (self.vec,))

    def finish(self):
        self.handle.wait()
        n = self.vec.numel() // 2
        hi = self.vec[:n].tolist()
        lo = [-x for x in self.vec[n:].tolist()]
        if hi != lo:
            nd_lo, nd_hi = lo[0], hi[0]
            raise errors.make(
                _capi.ERR_MISMATCH,
                f"tensor '{self.name}': ranks disagree on its shape: this rank has "
                f"{self.shape}; across ranks ndim is {nd_lo}..{nd_hi} and the dims range from "
                f"{tuple(lo[1:1 + nd_lo])} to {tuple(hi[1:1 + nd_hi])}")


def _wait_driving(p):
    """Waits on a herd._core.Handle with no deadline. herd.Handle.wait() without a timeout runs
    herd's rounds on this thread while the coordinator is idle (herd_progress_handle: no thread
    hand-off), handles Ctrl-C between slices, and turns C results into Python ones (the
    allgather's herd-allocated array)."""
    return p.wait()


class Handle:
    """An operation in flight, returned by the *_async functions.

    poll(handle) / handle.poll() says whether it is done; synchronize(handle) / handle.wait()
    waits and returns the output (a tensor, or a list of tensors for grouped ops).
    """

    __slots__ = ("_parts", "_checks", "_result", "_finish", "_device", "_done", "__weakref__")

    def __init__(self, parts, result, finish=None, checks=(), device=_capi.DEVICE_CPU):
        self._parts = parts        # herd._core.Handle objects
        self._checks = checks      # _ShapeCheck objects
        self._result = result
        self._finish = finish      # result -> result, run once after every part completed
        self._device = device
        self._done = False

    def poll(self):
        """True once every part has completed; never blocks."""
        if self._done:
            return True
        return all(p.poll() for p in self._parts) and all(c.handle.poll() for c in self._checks)

    def wait(self):
        """Waits for the operation and returns its output; raises its HerdError if it failed.

        CUDA: the tensor's current stream is made to wait for the result on the device; the
        host waits only until herd has issued the work.
        """
        if self._done:
            raise errors.make(_capi.ERR_NOT_FOUND, "this handle was already synchronized")
        self._done = True
        first = None
        vals = []
        for p in self._parts:
            try:
                if self._device >= 0:
                    stream = torch.cuda.current_stream(self._device).cuda_stream
                    errors.check(lib.herd_handle_stream_wait(p.id, ctypes.c_void_p(stream)))
                    if not p.poll():
                        continue  # its buffers stay alive in herd's orphan table until done
                vals.append(_wait_driving(p))
            except errors.HerdError as e:
                first = first or e
        for c in self._checks:
            try:
                c.finish()
            except errors.HerdError as e:
                # A shape disagreement explains a count mismatch better than the count does.
                if first is None or isinstance(e, errors.MismatchError):
                    first = e
        result, self._result, self._parts, self._checks = self._result, None, (), ()
        if result is None and vals:  # an op whose output herd allocated (issue 9's allgather)
            result = vals[0]
        if first is not None:
            raise first
        if self._finish is not None:
            result = self._finish(result)
        return result

    def __repr__(self):
        return f"<herd.torch.Handle {'done' if self._done else 'live'} parts={len(self._parts)}>"


def _push_pull(send, recv, name_b, name, code, op, dev, named, shape_check=True):
    """Submits one allreduce of `send` into `recv` (same pointer = in place)."""
    checks = ()
    if named and shape_check and name not in _shape_checked:
        _shape_checked.add(name)
        checks = (_ShapeCheck(send.shape, name_b, name),)
    hid = ctypes.c_int64(0)
    _set_stream(send, dev)
    st = lib.herd_push_pull(name_b, send.data_ptr() or None, recv.data_ptr() or None,
                            send.numel(), code, op, dev, ctypes.byref(hid))
    if st < 0:
        err = errors.make(st)
        for c in checks:
            try:
                c.handle.wait()
            except errors.HerdError:
                pass
        raise err
    return _core.Handle(hid.value, name, recv, (send, recv)), checks


def _allreduce_submit(tensor, output, name, op, prescale_factor, postscale_factor,
                      process_set, kind="allreduce"):
    """output is None (allocate) or tensor (in place)."""
    _check_process_set(process_set)
    name_b, name_s, named = _full_name(name, kind)
    what = f"tensor '{name_s}'"
    _check_tensor(tensor, what, in_place=output is not None)
    code = _dtype_of(tensor, what)
    dev = _device_of(tensor, what)
    hop = _herd_op(op, what)
    if _NATIVE_SCALE and (prescale_factor != 1.0 or postscale_factor != 1.0) and dev < 0:
        src = tensor if output is not None else tensor.contiguous()
        out = src if output is not None else torch.empty_like(src)
        h = herd.push_pull_async(_host_view(src), name=name_s, op=_OP_NAMES[op],
                                 out=_host_view(out), prescale=prescale_factor,
                                 postscale=postscale_factor, **_host_kwargs(src))
        return Handle([h], out, lambda _r, o=out: o, device=dev)
    if output is not None:
        send = recv = tensor
        _scale_(send, prescale_factor)
    elif prescale_factor != 1.0:
        send = recv = _scale_(tensor.detach().clone(memory_format=torch.contiguous_format),
                              prescale_factor)
    else:
        send = tensor.detach()
        if not send.is_contiguous():
            send = send.contiguous()
        recv = torch.empty_like(send, memory_format=torch.contiguous_format)
    part, checks = _push_pull(send, recv, name_b, name_s, code, hop, dev, named)
    finish = None
    if postscale_factor != 1.0:
        def finish(r, f=postscale_factor):
            return _scale_(r, f)
    result = tensor if output is not None else recv
    return Handle([part], result, finish, checks, dev)


def _host_view(t):
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    return t.numpy()


def _host_kwargs(t):
    return {"dtype": "bfloat16"} if t.dtype == torch.bfloat16 else {}


def allreduce_async(tensor, average=None, name=None, op=None, prescale_factor=1.0,
                    postscale_factor=1.0, process_set=global_process_set):
    """Submits an allreduce of `tensor` over all ranks into a new tensor; returns a Handle.

    tensor: any shape (0-d and empty included), dtype uint8/int8/int32/int64/float16/bfloat16/
        float32/float64, on the CPU or a CUDA device; the same shape and dtype on every rank.
        Not modified. Non-contiguous tensors are copied to a contiguous one first.
    op: Average (default), Sum, Min, Max or Product. Integer averages truncate toward zero.
        `average` is Horovod's deprecated spelling (True = Average, False = Sum).
    prescale_factor, postscale_factor: multiply the input before and the result after the
        reduction (Average's division by size() comes on top).
    name: the same on every rank; "allreduce.noname.<N>" from a per-process counter otherwise.

    synchronize(handle) returns the result, a tensor of `tensor`'s shape and dtype, the same on
    every rank. Raises InvalidArgumentError (bad dtype, op), NotSupportedError (Adasum, another
    device type), and on synchronize MismatchError when ranks disagree on shape or dtype.
    """
    return _allreduce_submit(tensor, None, name, _op_of(op, average), prescale_factor,
                             postscale_factor, process_set)


def allreduce_async_(tensor, average=None, name=None, op=None, prescale_factor=1.0,
                     postscale_factor=1.0, process_set=global_process_set):
    """In-place allreduce_async: `tensor` (contiguous) receives the result; synchronize(handle)
    returns it. `tensor` must not be read or written until then. Raises InvalidArgumentError
    for a non-contiguous tensor; otherwise as allreduce_async."""
    return _allreduce_submit(tensor, tensor, name, _op_of(op, average), prescale_factor,
                             postscale_factor, process_set)


def allreduce_(tensor, average=None, name=None, op=None, prescale_factor=1.0,
               postscale_factor=1.0, process_set=global_process_set):
    """In-place allreduce: returns `tensor`, now holding the result on every rank (see
    allreduce_async_). Not differentiable."""
    return allreduce_async_(tensor, average, name, op, prescale_factor, postscale_factor,
                            process_set).wait()


def _grouped_submit(tensors, in_place, name, op, prescale_factor, postscale_factor,
                    process_set):
    if not isinstance(tensors, (list, tuple)):
        raise errors.invalid_argument("grouped_allreduce takes a list of tensors")
    hs = []
    try:
        for i, t in enumerate(tensors):
            # Unnamed groups take counter names per member (and skip the one-time shape check,
            # which only named tensors get).
            hs.append(_allreduce_submit(t, t if in_place else None,
                                        None if name is None else f"{name}.{i}", op,
                                        prescale_factor, postscale_factor, process_set,
                                        kind="grouped_allreduce"))
    except Exception:
        for h in hs:  # what was submitted must still complete everywhere; ours fail alike
            try:
                h.wait()
            except errors.HerdError:
                pass
        raise
    return _GroupHandle(hs)


class _GroupHandle(Handle):
    __slots__ = ("_members",)

    def __init__(self, members):
        super().__init__([], None)
        self._members = members

    def poll(self):
        return all(h.poll() for h in self._members)

    def wait(self):
        if self._done:
            raise errors.make(_capi.ERR_NOT_FOUND, "this handle was already synchronized")
        self._done = True
        out, first = [], None
        for h in self._members:
            try:
                out.append(h.wait())
            except errors.HerdError as e:
                first = first or e
        if first is not None:
            raise first
        return out


def grouped_allreduce_async(tensors, average=None, name=None, op=None, prescale_factor=1.0,
                            postscale_factor=1.0, process_set=global_process_set):
    """Submits allreduces of every tensor in the list as one group; synchronize(handle) returns
    the list of results (new tensors, in order). Ranks must pass lists of equal length whose
    i-th tensors agree in shape and dtype. Tensor i is named "grouped_allreduce.<name>.<i>"
    ("grouped_allreduce.noname.<N>" per member when unnamed)."""
    return _grouped_submit(tensors, False, name, _op_of(op, average), prescale_factor,
                           postscale_factor, process_set)


def grouped_allreduce_async_(tensors, average=None, name=None, op=None, prescale_factor=1.0,
                             postscale_factor=1.0, process_set=global_process_set):
    """In-place grouped_allreduce_async: each (contiguous) tensor receives its result."""
    return _grouped_submit(tensors, True, name, _op_of(op, average), prescale_factor,
                           postscale_factor, process_set)


def grouped_allreduce_(tensors, average=None, name=None, op=None, prescale_factor=1.0,
                       postscale_factor=1.0, process_set=global_process_set):
    """In-place grouped allreduce; returns the list of tensors, now holding the results."""
    return grouped_allreduce_async_(tensors, average, name, op, prescale_factor,
                                    postscale_factor, process_set).wait()


def _broadcast_submit(tensor, output, root_rank, name, process_set):
    _check_process_set(process_set)
    name_b, name_s, named = _full_name(name, "broadcast")
    what = f"tensor '{name_s}'"
    _check_tensor(tensor, what, in_place=output is not None)
    code = _dtype_of(tensor, what)
    dev = _device_of(tensor, what)
    if not isinstance(root_rank, int) or isinstance(root_rank, bool):
        raise errors.invalid_argument(f"{what}: root_rank must be an int, got {root_rank!r}")
    if output is None:
        buf = tensor.detach().clone(memory_format=torch.contiguous_format)
    else:
        buf = tensor
    checks = ()
    if named and name_s not in _shape_checked:
        _shape_checked.add(name_s)
        checks = (_ShapeCheck(buf.shape, name_b, name_s),)
    hid = ctypes.c_int64(0)
    _set_stream(buf, dev)
    st = lib.herd_broadcast(name_b, buf.data_ptr() or None, buf.numel(), code, root_rank, dev,
                            ctypes.byref(hid))
    if st < 0:
        raise errors.make(st)
    return Handle([_core.Handle(hid.value, name_s, buf, (buf,))], buf, None, checks, dev)


def broadcast_async(tensor, root_rank, name=None, process_set=global_process_set):
    """Submits a broadcast of root_rank's `tensor` into a new tensor on every rank; returns a
    Handle whose synchronize() gives that tensor (on the root: a copy of `tensor`). `tensor`
    must have the same shape and dtype on every rank. Raises InvalidArgumentError for a bad
    root_rank or dtype; MismatchError on synchronize when ranks disagree."""
    return _broadcast_submit(tensor, None, root_rank, name, process_set)


def broadcast_async_(tensor, root_rank, name=None, process_set=global_process_set):
    """In-place broadcast_async: `tensor` (contiguous) receives root_rank's values."""
    return _broadcast_submit(tensor, tensor, root_rank, name, process_set)


def broadcast_(tensor, root_rank, name=None, process_set=global_process_set):
    """In-place broadcast: returns `tensor`, now equal to root_rank's on every rank."""
    return broadcast_async_(tensor, root_rank, name, process_set).wait()


def poll(handle):
    """True if the operation behind `handle` has completed (it may have failed); never blocks."""
    return handle.poll()


def synchronize(handle):
    """Waits for `handle` and returns its output tensor (a list for grouped ops). Raises the
    operation's HerdError (MismatchError, HerdTimeoutError, ShutdownError...) if it failed."""
    return handle.wait()


# Issue 9's collectives on the numpy-level package; herd.torch uses them when they exist.
def _need(fn):
    f = getattr(herd, fn, None)
    if f is None:
        raise errors.make(_capi.ERR_NOT_SUPPORTED,
                          f"herd.{fn} is not in this herd build (it comes with issue 9's "
                          "collectives)")
    return f


def _to_host(t):
    return t.detach().cpu().contiguous()


def _np_in(t):
    return _host_view(t), _host_kwargs(t)


def _from_np(arr, like):
    out = torch.from_numpy(arr)
    if like.dtype == torch.bfloat16:
        out = out.view(torch.bfloat16)
    return out.to(like.device)


def allgather_async(tensor, name=None, process_set=global_process_set):
    """Submits an allgather: every rank's `tensor` concatenated along dim 0 in rank order.
    Dims past the first must agree across ranks; the first may differ. synchronize(handle)
    returns the concatenation. Needs herd.allgather (issue 9): NotSupportedError otherwise."""
    _check_process_set(process_set)
    fn = _need("allgather_async")
    t = _to_host(tensor)
    arr, _ = _np_in(t)  # bfloat16 travels as its int16 bits: gathering copies bits
    _, name_s, _ = _full_name(name, "allgather")
    h = fn(arr, name=name_s)
    return Handle([h], None, lambda r: _from_np(r, tensor))


def allgather(tensor, name=None, process_set=global_process_set):
    """Synchronous allgather (see allgather_async), differentiable: the gradient of a rank's
    input is its slice of the allreduce (Average) of the output's gradient."""
    from ._functions import HorovodAllgather
    return HorovodAllgather.apply(tensor, name, process_set)


def _allgather_raw(tensor, name=None):
    return allgather_async(tensor, name).wait()


def alltoall_async(tensor, splits=None, name=None, process_set=global_process_set):
    """Submits an alltoall (see alltoall); synchronize(handle) returns (output,
    received_splits). Needs herd.alltoall_async (issue 9): NotSupportedError otherwise."""
    _check_process_set(process_set)
    fn = _need("alltoall_async")
    arr, _ = _np_in(_to_host(tensor))
    if splits is not None:
        splits = [int(s) for s in (splits.tolist() if torch.is_tensor(splits) else splits)]
    _, name_s, _ = _full_name(name, "alltoall")
    h = fn(arr, splits=splits, name=name_s)

    def finish(r):
        out, recv = r
        return _from_np(out, tensor), torch.as_tensor(list(recv), dtype=torch.int32)
    return Handle([h], None, finish)


def alltoall(tensor, splits=None, name=None, process_set=global_process_set):
    """Scatters slices of `tensor` along dim 0 to every rank and gathers theirs: rank r gets the
    r-th block of rows. splits: a 1-d int tensor or list of size() row counts summing to
    tensor.shape[0] (None: equal blocks). Dims past the first must agree across ranks. Returns
    (output, received_splits): the blocks every rank sent here, in rank order, and their row
    counts (int32). Needs herd.alltoall_async (issue 9): NotSupportedError otherwise."""
    return alltoall_async(tensor, splits, name, process_set).wait()


def reducescatter_async(tensor, name=None, op=Average, process_set=global_process_set,
                        prescale_factor=1.0, postscale_factor=1.0):
    """Submits a reducescatter (see reducescatter); synchronize(handle) returns this rank's
    block. Needs herd.reducescatter_async (issue 9): NotSupportedError otherwise."""
    _check_process_set(process_set)
    fn = _need("reducescatter_async")
    t = _scale_(_to_host(tensor).clone(), prescale_factor)
    arr, _ = _np_in(t)
    _, name_s, _ = _full_name(name, "reducescatter")
    h = fn(arr, op=_OP_NAMES[op], name=name_s)
    return Handle([h], None, lambda r: _scale_(_from_np(r, tensor), postscale_factor))


def reducescatter(tensor, name=None, compression=None, op=Average,
                  process_set=global_process_set, prescale_factor=1.0, postscale_factor=1.0):
    """Reduces `tensor` (same shape on every rank) over the ranks with `op` and returns this
    rank's block of dim 0 (blocks as even as possible, earlier ranks get the extra rows).
    compression: Compression.none/fp16 (floats travel as float16). Needs
    herd.reducescatter_async (issue 9): NotSupportedError otherwise."""
    if compression is not None:
        tensor, ctx = compression.compress(tensor)
    out = reducescatter_async(tensor, name, op, process_set, prescale_factor,
                              postscale_factor).wait()
    return compression.decompress(out, ctx) if compression is not None else out


def barrier(process_set=global_process_set):
    """Returns once every rank has called barrier(). Needs herd.barrier (issue 9)."""
    _check_process_set(process_set)
    _need("barrier")()


def join(device=-1):
    """Tells the other ranks this rank has no more data this epoch: it takes part (with zeros)
    in their allreduces until every rank has joined; returns the last rank to join. Needs
    herd.join (issue 9): NotSupportedError otherwise."""
    return _need("join")()
