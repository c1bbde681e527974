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

import herd.tensorflow as _tf

from . import callbacks  # noqa: F401
from .callbacks import BroadcastGlobalVariablesCallback, MetricAverageCallback  # noqa: F401

# The names horovod.keras shares with horovod.tensorflow: herd.tensorflow's own objects.
_FROM_TENSORFLOW = [
    "init", "shutdown", "is_initialized", "rank", "size", "local_rank", "local_size",
    "allreduce", "grouped_allreduce", "allgather", "broadcast", "reducescatter",
    "broadcast_variables", "DistributedOptimizer", "Compression",
    "Average", "Sum", "Adasum", "Min", "Max", "Product",
]
globals().update((_name, getattr(_tf, _name)) for _name in _FROM_TENSORFLOW)

__all__ = _FROM_TENSORFLOW + [
    "callbacks", "BroadcastGlobalVariablesCallback", "MetricAverageCallback",
]
