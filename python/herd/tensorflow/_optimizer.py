"""DistributedGradientTape, DistributedOptimizer (Keras) and broadcast_variables.

Gradients are averaged with one grouped allreduce per step (HerdGroupedAllreduce): one kernel,
one herd group, fused by herd into one collective per dtype where they fit the fusion buffer.
"""

import tensorflow as tf

import herd
from herd import _capi, errors

from . import _ops
from .compression import Compression


def _reduce_gradients(grads, compression, sparse_as_dense, op, gradient_predivide_factor,
                      name):
    """grads (a list, entries may be None or tf.IndexedSlices) reduced across ranks."""
    if herd.size() == 1 and gradient_predivide_factor == 1.0:
        return list(grads)
    op, pre, post = _ops._split_scale(op, 1.0, 1.0, gradient_predivide_factor)
    idx, todo = [], []
    for i, g in enumerate(grads):
        if g is None:
            continue
        if sparse_as_dense and isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        idx.append(i)
        todo.append(g)
    out = list(grads)
    reduced = _ops.grouped_allreduce(todo, compression=compression, op=op, prescale_factor=pre,
                                     postscale_factor=post, name=name)
    for i, r in zip(idx, reduced):
        out[i] = r
    return out


def _check_unsupported(num_groups=0, groups=None, backward_passes_per_step=1):
    if num_groups or groups:
        raise errors.make(_capi.ERR_NOT_SUPPORTED,
                          "herd reduces all gradients as one group: num_groups/groups are not "
                          "supported")
    if backward_passes_per_step != 1:
        raise errors.make(_capi.ERR_NOT_SUPPORTED,
                          "backward_passes_per_step other than 1 is not supported")


class DistributedGradientTape:
    """Wraps a tf.GradientTape so that gradient() returns gradients averaged over all ranks
    (horovod.tensorflow.DistributedGradientTape):

        with tf.GradientTape() as tape:
            loss = loss_fn(model(x), y)
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, model.trainable_variables)

    Eager or inside tf.function. Every rank must call gradient() for the same sources in the same
    order. op: Average (default) or Sum; compression: Compression.none/fp16; sparse_as_dense:
    turn tf.IndexedSlices gradients dense before the allreduce (else they are allgathered);
    gradient_predivide_factor: split Average's division into a 1/f before and f/size after.
    Everything else is forwarded to the wrapped tape.
    """

    def __init__(self, gradtape, device_dense="", device_sparse="",
                 compression=Compression.none, sparse_as_dense=False, op=_ops.Average,
                 gradient_predivide_factor=1.0, num_groups=0, groups=None,
                 process_set=_ops.global_process_set, scale_local_gradients=True):
        _ops._check_process_set(process_set)
        _check_unsupported(num_groups, groups)
        if op not in (_ops.Average, _ops.Sum):
            raise errors.invalid_argument("DistributedGradientTape: op must be Average or Sum")
        self._tape = gradtape
        self._compression = compression
        self._sparse_as_dense = sparse_as_dense
        self._op = op
        self._predivide = float(gradient_predivide_factor)

    def gradient(self, target, sources, output_gradients=None, **kwargs):
        """The wrapped tape's gradient(), reduced across ranks (same structure as sources)."""
        grads = self._tape.gradient(target, sources, output_gradients, **kwargs)
        flat = tf.nest.flatten(grads, expand_composites=False)
        flat = _reduce_gradients(flat, self._compression, self._sparse_as_dense, self._op,
                                 self._predivide, None)
        return tf.nest.pack_sequence_as(grads, flat, expand_composites=False)

    def __enter__(self):
        self._tape.__enter__()
        return self

    def __exit__(self, *exc):
        return self._tape.__exit__(*exc)

    def __getattr__(self, attr):
        return getattr(self._tape, attr)


def broadcast_variables(variables, root_rank, process_set=_ops.global_process_set,
                        inplace=False):
    """Assigns root_rank's values to `variables` (tf.Variable or Keras variables, the same list
    in the same order on every rank) on every rank. Eager: done on return. Inside tf.function or
    a graph: returns the op that does it."""
    _ops._check_process_set(process_set)
    assigns = []
    for i, v in enumerate(variables):
        value = tf.convert_to_tensor(v)
        if value.dtype not in _ops.DTYPES:
            raise errors.invalid_argument(
                f"broadcast_variables: variable {i} ({getattr(v, 'path', v.name)}) has dtype "
                f"{value.dtype.name}, which herd does not carry")
        assigns.append(v.assign(_ops.broadcast(value, root_rank)))
    if tf.executing_eagerly():
        return None
    return tf.group(*assigns)


class _DistributedMixin:
    """Mixed into a copy of a Keras optimizer's class: apply() averages the gradients across
    ranks first. apply_gradients() and model.fit() both come through apply()."""

    def apply(self, grads, trainable_variables=None):
        grads = _reduce_gradients(list(grads), self._herd_compression,
                                  self._herd_sparse_as_dense, self._herd_op,
                                  self._herd_predivide, None)
        return super().apply(grads, trainable_variables)


def DistributedOptimizer(optimizer, name=None, device_dense="", device_sparse="",
                         compression=Compression.none, sparse_as_dense=False,
                         backward_passes_per_step=1, op=_ops.Average,
                         gradient_predivide_factor=1.0, average_aggregated_gradients=False,
                         num_groups=0, groups=None, process_set=_ops.global_process_set,
                         scale_local_gradients=True):
    """A Keras 3 optimizer like `optimizer` (same class, same config) whose apply() and
    apply_gradients() average the gradients across ranks first, with one grouped allreduce
    (horovod.tensorflow.keras.DistributedOptimizer). Use it in model.compile() or a custom loop.
    Every rank must apply the same variables in the same order each step. op: Average or Sum.
    A new optimizer is made from optimizer.get_config(): wrap it before it has slots.
    Raises NotSupportedError for backward_passes_per_step != 1, num_groups and groups."""
    _ops._check_process_set(process_set)
    _check_unsupported(num_groups, groups, backward_passes_per_step)
    if op not in (_ops.Average, _ops.Sum):
        raise errors.invalid_argument("DistributedOptimizer: op must be Average or Sum")
    base = type(optimizer)
    cls = type(base.__name__, (_DistributedMixin, base), {"__module__": base.__module__})
    new = cls.from_config(optimizer.get_config())
    new._herd_compression = compression
    new._herd_sparse_as_dense = sparse_as_dense
    new._herd_op = op
    new._herd_predivide = float(gradient_predivide_factor)
    return new
