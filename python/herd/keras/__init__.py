"""herd.keras: horovod.keras / horovod.tensorflow.keras on herd, for Keras 3 on TensorFlow.

    import keras
    import herd.keras as hvd

    hvd.init()
    model.compile(optimizer=hvd.DistributedOptimizer(keras.optimizers.Adam(1e-3 * hvd.size())),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_shard, y_shard, callbacks=[hvd.callbacks.BroadcastGlobalVariablesCallback(0),
                                           hvd.callbacks.MetricAverageCallback()])

Everything here is herd.tensorflow's (TensorFlow ops from libherd_tf.so); importing it imports
TensorFlow.
"""

from herd.tensorflow import (  # noqa: F401
    Adasum,
    Average,
    Compression,
    DistributedOptimizer,
    Max,
    Min,
    Product,
    Sum,
    allgather,
    allreduce,
    broadcast,
    broadcast_variables,
    grouped_allreduce,
    init,
    is_initialized,
    local_rank,
    local_size,
    rank,
    reducescatter,
    shutdown,
    size,
)

from . import callbacks  # noqa: F401
from .callbacks import BroadcastGlobalVariablesCallback, MetricAverageCallback  # noqa: F401

__all__ = [
    "init", "shutdown", "is_initialized", "rank", "size", "local_rank", "local_size",
    "allreduce", "grouped_allreduce", "allgather", "broadcast", "reducescatter",
    "broadcast_variables", "DistributedOptimizer", "Compression", "callbacks",
    "BroadcastGlobalVariablesCallback", "MetricAverageCallback",
    "Average", "Sum", "Adasum", "Min", "Max", "Product",
]
