"""Keras callbacks for data-parallel training with herd (horovod.keras.callbacks)."""

import numpy as np
import tensorflow as tf

from herd.tensorflow import _ops
from herd.tensorflow._optimizer import broadcast_variables

try:
    import keras
    _Callback = keras.callbacks.Callback
except ImportError:  # Keras 3 ships with TensorFlow 2.16+; tf.keras is the same Keras there
    _Callback = tf.keras.callbacks.Callback


class BroadcastGlobalVariablesCallback(_Callback):
    """Makes every rank start from root_rank's state: broadcasts the model's variables when
    training begins (if the model is built), and the model's and the optimizer's variables
    once the first batch has ended (the optimizer makes its slots at its first step), as
    horovod.keras does. Every rank must train the same model."""

    def __init__(self, root_rank, device=""):
        super().__init__()
        self.root_rank = root_rank
        self.broadcast_done = False

    def _variables(self, with_optimizer):
        variables = list(self.model.variables)
        opt = getattr(self.model, "optimizer", None)
        if with_optimizer and opt is not None:
            variables += list(opt.variables)
        return variables

    def on_train_begin(self, logs=None):
        if self.model.built:
            broadcast_variables(self._variables(False), self.root_rank)

    def on_train_batch_end(self, batch, logs=None):
        if self.broadcast_done:
            return
        broadcast_variables(self._variables(True), self.root_rank)
        self.broadcast_done = True


class MetricAverageCallback(_Callback):
    """At each epoch's end, replaces every numeric entry of `logs` (loss, metrics, validation
    metrics) by its average over the ranks, with one grouped allreduce (float64) of the entries
    in name order. Put it before callbacks that read the logs (checkpoints, early stopping,
    loggers). Every rank must log the same names."""

    def __init__(self, device=""):
        super().__init__()

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        keys = sorted(k for k, v in logs.items()
                      if isinstance(v, (int, float, np.number, np.ndarray, tf.Tensor)))
        if not keys:
            return
        values = [tf.cast(tf.reshape(tf.convert_to_tensor(logs[k]), []), tf.float64)
                  for k in keys]
        averaged = _ops.grouped_allreduce(values, op=_ops.Average,
                                          name=f"metric_average.epoch{epoch}")
        for k, v in zip(keys, averaged):
            logs[k] = float(v.numpy())
