"""herd's collectives as TensorFlow ops: the op library (libherd_tf.so) and its Python side.

The op library is C against TensorFlow's stable C API (src/tensorflow/herd_tf_ops.c). It does
not link libherd: its herd_* symbols resolve against the libherd that `import herd` loaded with
RTLD_GLOBAL, so this module imports herd before tf.load_op_library. Loaded before herd, the
library refuses to load ("undefined symbol: herd_...").

Search order for the library, first hit wins:
  1. $HERD_TF_LIBRARY, a path to the library file (an error if it cannot be loaded);
  2. libherd_tf.so installed beside the herd package (pip install where TensorFlow was found);
  3. the build tree of a source checkout (<checkout>/build*/src/tensorflow/libherd_tf.so).

Names: an op's herd tensor name is "<kind>.<name>" when the caller names it. Unnamed, inside a
tf.function (graph), it is the op's node name ("HerdAllreduce_<input tensor's name>", made
unique by TensorFlow): identical graphs give identical names on every rank. Unnamed and eager,
it is the op type's name: eager ops run one at a time in program order, so ranks agree as long
as they make their unnamed calls in the same order (and not from several threads at once).

Every op is stateful, so tf.function runs them in program order (automatic control
dependencies) and never folds, deduplicates or prunes them.
"""

import os
import re

import tensorflow as tf

import herd
from herd import _capi, errors
from herd._build_info import tf_op_library_candidates
from herd._horovod import _HERD_OP, _herd_op, _op_of
from herd._horovod import Adasum, Average, Max, Min, Product, Sum, global_process_set  # noqa: F401

from .compression import Compression

_FROM_HERD_OP = {v: k for k, v in _HERD_OP.items()}

#: The dtypes herd's ops take (herd.h's dtype table).
DTYPES = (tf.uint8, tf.int8, tf.int32, tf.int64, tf.float16, tf.bfloat16, tf.float32,
          tf.float64)


def _load_library():
    env = os.environ.get("HERD_TF_LIBRARY")
    if env:
        try:
            return tf.load_op_library(env), env
        except (tf.errors.NotFoundError, OSError) as e:
            raise ImportError(f"herd.tensorflow: cannot load HERD_TF_LIBRARY={env!r}: "
                              f"{e}") from None
    tried = []
    for where, p in tf_op_library_candidates():
        try:
            return tf.load_op_library(str(p)), str(p)
        except (tf.errors.NotFoundError, OSError) as e:
            tried.append(f"  {p} ({where}): {e}")
    detail = "\n".join(tried) if tried else "  (no candidate found)"
    raise ImportError(
        "herd.tensorflow: cannot find the op library libherd_tf.so. It is built with herd when "
        "CMake's python3 can import tensorflow (cmake -S . -B build && cmake --build build), "
        "and installed beside the package by `pip install --no-build-isolation .` with "
        "TensorFlow present. Set HERD_TF_LIBRARY to the file to use another. Tried:\n" + detail)


_lib, library_path = _load_library()


def _check_process_set(process_set):
    if process_set is not global_process_set and process_set is not None:
        raise errors.make(_capi.ERR_NOT_SUPPORTED,
                          "herd.tensorflow has one process set, all ranks (global_process_set)")


def _check_dtype(tensor, what):
    if tensor.dtype not in DTYPES:
        raise errors.invalid_argument(
            f"{what}: herd does not reduce {tensor.dtype.name} tensors; use uint8, int8, int32, "
            "int64, float16, bfloat16, float32 or float64")


def _normalize_name(name):
    """A TensorFlow tensor name as a node name ("dense/kernel:0" -> "dense_kernel_0")."""
    return re.sub("[^a-zA-Z0-9_]", "_", name)


def _names(kind, op_type, name, tensor):
    """(tensor_name attr, node name) for an op: see the module docstring."""
    attr = "" if name is None else f"{kind}.{name}"
    if tf.executing_eagerly():
        return attr, None
    if name is None and getattr(tensor, "name", None):
        return attr, f"{op_type}_{_normalize_name(tensor.name)}"
    return attr, None


def _allreduce(tensor, op=Sum, prescale_factor=1.0, postscale_factor=1.0, name=None):
    """The raw op: herd op `op` (Horovod's numbering), differentiable."""
    tensor = tf.convert_to_tensor(tensor)
    _check_dtype(tensor, "allreduce")
    attr, node = _names("allreduce", "HerdAllreduce", name, tensor)
    return _lib.herd_allreduce(tensor, reduce_op=_herd_op(op, "allreduce"),
                               prescale_factor=float(prescale_factor),
                               postscale_factor=float(postscale_factor), tensor_name=attr,
                               name=node)


def _split_scale(op, prescale_factor, postscale_factor, gradient_predivide_factor=1.0):
    """Horovod's gradient_predivide_factor: Average becomes Sum with the division split into a
    prescale of 1/f and a postscale of f/size."""
    if gradient_predivide_factor != 1.0 and op == Average:
        return (Sum, prescale_factor / gradient_predivide_factor,
                postscale_factor * gradient_predivide_factor / herd.size())
    return op, prescale_factor, postscale_factor


def allreduce(tensor, average=None, device_dense="", device_sparse="",
              compression=Compression.none, op=None, prescale_factor=1.0, postscale_factor=1.0,
              name=None, process_set=global_process_set, ignore_name_scope=False):
    """Allreduce of `tensor` over all ranks; eager or inside tf.function; differentiable (the
    gradient is the same allreduce of the output's gradient).

    tensor: a tf.Tensor (or anything tf.convert_to_tensor takes), any shape, dtype uint8/int8/
        int32/int64/float16/bfloat16/float32/float64, the same shape and dtype on every rank;
        or a tf.IndexedSlices, whose values and indices are allgathered (divided by size() for
        Average), as Horovod does.
    op: Average (default), Sum, Min, Max, Product; `average` is Horovod's deprecated flag.
        Average of integers truncates toward zero.
    compression: Compression.none or Compression.fp16 (floats travel as float16).
    prescale_factor / postscale_factor: multiply the input before / the result after.
    name: the same on every rank ("allreduce.<name>" in herd); see the module docstring.
    Returns a tensor of `tensor`'s shape and dtype, the same on every rank. Raises herd's
    InvalidArgumentError (dtype, op) and NotSupportedError (Adasum) at once; a mismatch across
    ranks (shape, dtype) raises tf.errors.FailedPreconditionError on every rank when the op runs,
    its message starting with HERD_ERR_MISMATCH.
    """
    _check_process_set(process_set)
    op = _op_of(op, average)
    if isinstance(tensor, tf.IndexedSlices):
        values = allgather(tensor.values, name=None if name is None else f"{name}.values")
        indices = allgather(tensor.indices, name=None if name is None else f"{name}.indices")
        if op == Average:
            values = values / tf.cast(herd.size(), values.dtype)
        elif op != Sum:
            raise errors.invalid_argument("allreduce of tf.IndexedSlices supports only Average "
                                          "and Sum (or pass sparse_as_dense=True)")
        return tf.IndexedSlices(values, indices, dense_shape=tensor.dense_shape)
    tensor = tf.convert_to_tensor(tensor)
    compressed, ctx = compression.compress(tensor)
    out = _allreduce(compressed, op, prescale_factor, postscale_factor, name)
    return compression.decompress(out, ctx)


def grouped_allreduce(tensors, average=None, device_dense="", device_sparse="",
                      compression=Compression.none, op=None, prescale_factor=1.0,
                      postscale_factor=1.0, name=None, process_set=global_process_set,
                      ignore_name_scope=False):
    """Allreduce of every tensor of the list as one op: herd negotiates them as one group (all
    ready in the same round) and fuses them. Dtypes may differ. Returns the list of results, in
    order; differentiable like allreduce. Members are named "<name>.<i>" in herd.
    tf.IndexedSlices members go through allreduce (allgather) one by one. See allreduce."""
    _check_process_set(process_set)
    op = _op_of(op, average)
    tensors = list(tensors)
    if not tensors:
        return []
    outs = [None] * len(tensors)
    dense = []
    for i, t in enumerate(tensors):
        if isinstance(t, tf.IndexedSlices):
            outs[i] = allreduce(t, op=op, name=None if name is None else f"{name}.sparse.{i}")
        else:
            dense.append(i)
    if dense:
        pairs = [compression.compress(tf.convert_to_tensor(tensors[i])) for i in dense]
        for c, _ in pairs:
            _check_dtype(c, "grouped_allreduce")
        attr = "" if name is None else f"grouped_allreduce.{name}"
        reduced = _lib.herd_grouped_allreduce(
            [c for c, _ in pairs], reduce_op=_herd_op(op, "grouped_allreduce"),
            prescale_factor=float(prescale_factor), postscale_factor=float(postscale_factor),
            tensor_name=attr)
        for i, r, (_, ctx) in zip(dense, reduced, pairs):
            outs[i] = compression.decompress(r, ctx)
    return outs


def allgather(tensor, name=None, ignore_name_scope=False, process_set=global_process_set):
    """Concatenates every rank's `tensor` along dimension 0, in rank order; differentiable (the
    gradient is this rank's rows of the Average allreduce of the output's gradient).

    tensor: any dtype of DTYPES; first dimensions may differ across ranks, the others must
        agree; a scalar gathers as one row. Returns [sum of first dims, ...] on every rank.
    """
    _check_process_set(process_set)
    tensor = tf.convert_to_tensor(tensor)
    _check_dtype(tensor, "allgather")
    attr, node = _names("allgather", "HerdAllgather", name, tensor)
    return _lib.herd_allgather(tensor, tensor_name=attr, name=node)


def broadcast(tensor, root_rank, name=None, ignore_name_scope=False,
              process_set=global_process_set):
    """root_rank's `tensor` on every rank (a new tensor); differentiable (the gradient reaches
    only the root: the Average allreduce of the output's gradient there, zeros elsewhere).
    `tensor` must have the same shape and dtype on every rank."""
    _check_process_set(process_set)
    tensor = tf.convert_to_tensor(tensor)
    _check_dtype(tensor, "broadcast")
    attr, node = _names("broadcast", "HerdBroadcast", name, tensor)
    return _lib.herd_broadcast(tensor, root_rank=int(root_rank), tensor_name=attr, name=node)


def alltoall(tensor, splits=None, name=None, ignore_name_scope=False,
             process_set=global_process_set):
    """Sends rows of `tensor` (rank >= 1) to every rank and gathers theirs: `splits` (size()
    row counts summing to tensor.shape[0]; None: equal blocks, which needs the first dimension
    divisible by size()) says how many rows go to each rank, in rank order. Dims past the first
    must agree across ranks. Returns (output, received_splits): the rows every rank sent here,
    in rank order, and their row counts (int64). Differentiable (the gradient goes back with
    received_splits)."""
    _check_process_set(process_set)
    tensor = tf.convert_to_tensor(tensor)
    _check_dtype(tensor, "alltoall")
    if splits is None:
        splits = tf.zeros([0], tf.int64)
    else:
        splits = tf.cast(tf.convert_to_tensor(splits), tf.int64)
    attr, node = _names("alltoall", "HerdAlltoall", name, tensor)
    return tuple(_lib.herd_alltoall(tensor, splits, tensor_name=attr, name=node))


def reducescatter(tensor, op=Average, name=None, compression=Compression.none,
                  ignore_name_scope=False, process_set=global_process_set, prescale_factor=1.0,
                  postscale_factor=1.0):
    """Reduces `tensor` (rank >= 1, the same shape on every rank) over the ranks with `op`
    (Average or Sum) and returns this rank's block of dimension 0: blocks as even as possible,
    earlier ranks get the extra rows. Differentiable (the gradient is the allgather of the
    blocks' gradients, divided by size() for Average)."""
    _check_process_set(process_set)
    if op not in (Average, Sum):
        raise errors.invalid_argument("reducescatter supports Average and Sum")
    tensor = tf.convert_to_tensor(tensor)
    compressed, ctx = compression.compress(tensor)
    _check_dtype(compressed, "reducescatter")
    if prescale_factor != 1.0:
        compressed = compressed * tf.cast(prescale_factor, compressed.dtype)
    attr, node = _names("reducescatter", "HerdReducescatter", name, compressed)
    out = _lib.herd_reducescatter(compressed, reduce_op=_herd_op(op, "reducescatter"),
                                  tensor_name=attr, name=node)
    if postscale_factor != 1.0:
        out = out * tf.cast(postscale_factor, out.dtype)
    return compression.decompress(out, ctx)


# ---- gradients (Horovod's rules) ----------------------------------------------------------


@tf.RegisterGradient("HerdAllreduce")
def _allreduce_grad(op, grad):
    return _lib.herd_allreduce(grad, reduce_op=op.get_attr("reduce_op"),
                               prescale_factor=op.get_attr("prescale_factor"),
                               postscale_factor=op.get_attr("postscale_factor"))


@tf.RegisterGradient("HerdGroupedAllreduce")
def _grouped_allreduce_grad(op, *grads):
    grads = [tf.zeros_like(o) if g is None else g for g, o in zip(grads, op.outputs)]
    return _lib.herd_grouped_allreduce(grads, reduce_op=op.get_attr("reduce_op"),
                                       prescale_factor=op.get_attr("prescale_factor"),
                                       postscale_factor=op.get_attr("postscale_factor"))


def _rows(x):
    """x's first dimension as a [1] int64 tensor (a scalar counts as one row)."""
    shape = tf.shape(x, out_type=tf.int64)
    return tf.cond(tf.size(shape) > 0, lambda: shape[:1], lambda: tf.ones([1], tf.int64))


@tf.RegisterGradient("HerdAllgather")
def _allgather_grad(op, grad):
    x = op.inputs[0]
    grad = _lib.herd_allreduce(grad, reduce_op=_capi.AVERAGE)
    dims = _lib.herd_allgather(_rows(x))
    r = herd.rank()
    offset = tf.reduce_sum(dims[:r])
    mine = grad[offset:offset + dims[r]]
    return tf.reshape(mine, tf.shape(x))


@tf.RegisterGradient("HerdBroadcast")
def _broadcast_grad(op, grad):
    grad = _lib.herd_allreduce(grad, reduce_op=_capi.AVERAGE)
    if herd.rank() != op.get_attr("root_rank"):
        return grad * tf.zeros([], grad.dtype)
    return grad


@tf.RegisterGradient("HerdAlltoall")
def _alltoall_grad(op, grad, grad_splits):
    out, _ = _lib.herd_alltoall(grad, op.outputs[1])
    return out, None


@tf.RegisterGradient("HerdReducescatter")
def _reducescatter_grad(op, grad):
    grad = _lib.herd_allgather(grad)
    if op.get_attr("reduce_op") == _capi.AVERAGE:
        grad = grad / tf.cast(herd.size(), grad.dtype)
    return grad
