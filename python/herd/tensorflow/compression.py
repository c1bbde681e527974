"""Gradient compression for allreduce, DistributedGradientTape and DistributedOptimizer
(horovod.tensorflow.compression)."""

import tensorflow as tf

from herd._horovod import Compressor, NoneCompressor


class FP16Compressor(Compressor):
    """Sends floating-point tensors as float16 (half the bytes; herd sums float16 pairwise in
    float32), and casts the result back to the original dtype. Other dtypes pass unchanged."""

    @staticmethod
    def compress(tensor):
        if tensor.dtype.is_floating and tensor.dtype != tf.float16:
            return tf.cast(tensor, tf.float16), tensor.dtype
        return tensor, None

    @staticmethod
    def decompress(tensor, ctx):
        if ctx is not None:
            return tf.cast(tensor, ctx)
        return tensor


class Compression:
    """The compressors by name: Compression.none, Compression.fp16."""

    none = NoneCompressor
    fp16 = FP16Compressor
