#!/usr/bin/env python3
"""Data-parallel training of a small Keras CNN on scikit-learn's digits with herd.keras.

    python3 examples/tensorflow/train_keras.py                  # one process
    mpirun -np 4 python3 examples/tensorflow/train_keras.py --check-single --min-accuracy 0.95

Written as for horovod.tensorflow.keras (`import herd.keras as hvd`): every rank builds the
model from its own random seed, BroadcastGlobalVariablesCallback makes them start from rank 0's
weights, each rank fits its shard of every global batch (the global batch is split over the
ranks, so the learning rate stays as in one process), DistributedOptimizer averages the
gradients with one grouped allreduce per step, and MetricAverageCallback averages the logged
loss and accuracy over the ranks. Test accuracy is counted on every rank's share of the test
set and summed over the ranks.

--check-single: afterwards rank 0 trains the same model in one process on the same global
batches (no herd) and the program fails unless both reach the same test accuracy. The model is
float64 by default so that this holds exactly (the ranks' average sums in another order than one
process does; in float64 the difference stays near 1e-12). --min-accuracy: fail below this test
accuracy. Every rank exits alike.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:
    import herd.keras as hvd
except ModuleNotFoundError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
    import herd.keras as hvd

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=48,
                   help="global batch, split over the ranks (must divide by their number)")
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--check-single", action="store_true",
                   help="also train in one process and require the same test accuracy")
    p.add_argument("--min-accuracy", type=float, default=None)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def datasets(seed, dtype):
    """Digits scaled to [0, 1] as 8x8x1 images: 1437 training rows in a fixed shuffled order,
    360 test rows (the same on every rank)."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(dtype)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.RandomState(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1437], y[:1437]), (x[1437:], y[1437:])


def make_model(seed, lr):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    return model, keras.optimizers.Adam(lr)


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def shard(a, global_batch, rank, size):
    """This rank's rows of every full global batch, in order (the remainder is dropped so every
    rank takes the same number of steps)."""
    local = global_batch // size
    steps = len(a) // global_batch
    return np.concatenate([a[s * global_batch + rank * local:s * global_batch + (rank + 1) * local]
                           for s in range(steps)])


def correct_count(model, x, y):
    return int(np.sum(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def train_one_process(args, train, test):
    model, opt = make_model(args.seed, args.lr)
    model.compile(optimizer=opt, loss=LOSS)
    steps = len(train[0]) // args.batch_size
    n = steps * args.batch_size
    model.fit(train[0][:n], train[1][:n], batch_size=args.batch_size, epochs=args.epochs,
              shuffle=False, verbose=0)
    return correct_count(model, *test) / len(test[0])


def main(argv=None):
    args = parse_args(argv)
    keras.backend.set_floatx(args.dtype)
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    if args.batch_size % size:
        raise SystemExit(f"--batch-size {args.batch_size} does not divide by {size} ranks")
    train, test = datasets(args.seed, args.dtype)
    x, y = shard(train[0], args.batch_size, rank, size), shard(train[1], args.batch_size, rank,
                                                               size)

    # Each rank starts from its own weights; the callback broadcasts rank 0's.
    model, opt = make_model(args.seed + rank, args.lr)
    if rank == 0:
        model.set_weights(make_model(args.seed, args.lr)[0].get_weights())
    model.compile(optimizer=hvd.DistributedOptimizer(opt), loss=LOSS, metrics=["accuracy"])
    callbacks = [hvd.callbacks.BroadcastGlobalVariablesCallback(0),
                 hvd.callbacks.MetricAverageCallback()]
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch_size // size, epochs=args.epochs,
                        shuffle=False, verbose=0, callbacks=callbacks)
    took = time.perf_counter() - start
    if rank == 0 and not args.quiet:
        for e, (loss, acc) in enumerate(zip(history.history["loss"],
                                            history.history["accuracy"])):
            print(f"epoch {e + 1}: loss {loss:.4f} train accuracy {acc:.4f} (mean over ranks)")

    # Test accuracy: every rank counts its share of the test set; the counts are summed.
    tx, ty = test[0][rank::size], test[1][rank::size]
    correct = hvd.allreduce(tf.constant(correct_count(model, tx, ty), tf.int64), op=hvd.Sum)
    acc = int(correct) / len(test[0])

    failures = []
    if args.min_accuracy is not None and acc < args.min_accuracy:
        failures.append(f"test accuracy {acc:.4f} < {args.min_accuracy}")
    if rank == 0:
        print(f"{size} rank(s): test accuracy {acc:.4f} after {args.epochs} epochs "
              f"({took:.1f} s)")
    if args.check_single and rank == 0:
        single = train_one_process(args, train, test)
        print(f"one process on the same global batches: test accuracy {single:.4f}")
        if single != acc:
            failures.append(f"{size} ranks reached {acc:.4f}, one process {single:.4f}")
    failed = hvd.allreduce(tf.constant(1 if failures else 0, tf.int32), op=hvd.Max)
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    hvd.shutdown()
    return 1 if int(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
