"""herd.tensorflow: horovod.tensorflow's API on herd, so `import herd.tensorflow as hvd` runs the
common Horovod TensorFlow scripts.

    import tensorflow as tf
    import herd.tensorflow as hvd

    hvd.init()
    model = make_model()
    opt = tf.keras.optimizers.SGD(0.01 * hvd.size())
    hvd.broadcast_variables(model.variables, root_rank=0)
    for x, y in shard:                              # each rank its own shard
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x))
        tape = hvd.DistributedGradientTape(tape)    # gradients averaged over the ranks
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))

Keras: hvd.DistributedOptimizer(opt) in model.compile, and herd.keras's callbacks
(BroadcastGlobalVariablesCallback, MetricAverageCallback).

The collectives are TensorFlow ops (HerdAllreduce, HerdAllgather, ...) from libherd_tf.so, an op
library written in C against TensorFlow's stable C API that calls libherd through the symbols
`import herd` made global (docs/tensorflow.md). They run eagerly and inside tf.function, on the
CPU (a GPU tensor is copied to the host and back by TensorFlow). TensorFlow is imported when this
submodule is, never by `import herd`.
"""

try:
    import tensorflow as tf  # noqa: F401
except ModuleNotFoundError as e:
    if e.name != "tensorflow":
        raise
    raise ImportError("herd.tensorflow needs TensorFlow, which is not installed in this Python; "
                      "install it with `python3 -m pip install tensorflow-cpu`") from None

import herd as _herd
from herd import errors as _errors
from herd import (  # noqa: F401 - re-exported, as horovod.tensorflow does
    HerdError,
    HerdTimeoutError,
    InvalidArgumentError,
    MismatchError,
    NotSupportedError,
    ShutdownError,
    init,
    is_initialized,
    local_rank,
    local_size,
    rank,
    shutdown,
    size,
)

from herd._horovod import (  # noqa: F401 - Horovod's build queries
    gloo_built, gloo_enabled, mpi_built, mpi_enabled, mpi_threads_supported, nccl_built)

from . import _ops
from ._ops import (  # noqa: F401
    DTYPES,
    Adasum,
    Average,
    Max,
    Min,
    Product,
    Sum,
    allgather,
    allreduce,
    alltoall,
    broadcast,
    global_process_set,
    grouped_allreduce,
    library_path,
    reducescatter,
)
from ._optimizer import (  # noqa: F401
    DistributedGradientTape,
    DistributedOptimizer,
    broadcast_variables,
)
from .compression import Compression


def broadcast_object(obj, root_rank=0, name=None, process_set=global_process_set):
    """root_rank's picklable `obj` on every rank (eager, host side: herd.broadcast_object)."""
    _ops._check_process_set(process_set)
    return _herd.broadcast_object(obj, root=root_rank, name=name)


def allgather_object(obj, name=None, process_set=global_process_set):
    """Every rank's picklable `obj`, as a list in rank order (herd.allgather_object)."""
    _ops._check_process_set(process_set)
    return _herd.allgather_object(obj, name=name)


def barrier(process_set=global_process_set):
    """Returns once every rank has called barrier() (host side, eager)."""
    _ops._check_process_set(process_set)
    _herd.barrier()


def join():
    """For uneven data (herd.join): a rank out of batches calls join() and takes part, with
    zeros, in what the others still submit, until every rank has joined. Returns the last rank
    to join. Eager and host side."""
    return _herd.join()


def broadcast_global_variables(root_rank):
    """Horovod's TF1 name: in TensorFlow 2 there are no global variables to find; use
    broadcast_variables(model.variables, root_rank) or herd.keras's
    BroadcastGlobalVariablesCallback."""
    raise _errors.make(_herd.ERR_NOT_SUPPORTED,
                       "broadcast_global_variables needs TF1 global variables; use "
                       "broadcast_variables(model.variables, root_rank)")


def cuda_built():
    """False: herd's TensorFlow kernels are CPU kernels (docs/tensorflow.md)."""
    return False


__all__ = [
    "init", "shutdown", "is_initialized", "rank", "size", "local_rank", "local_size",
    "allreduce", "grouped_allreduce", "allgather", "broadcast", "alltoall", "reducescatter",
    "broadcast_variables", "DistributedGradientTape", "DistributedOptimizer", "Compression",
    "Average", "Sum", "Adasum", "Min", "Max", "Product", "global_process_set", "DTYPES",
    "library_path", "broadcast_object", "allgather_object", "barrier", "join",
]
