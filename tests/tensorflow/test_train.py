"""Same parameters: N ranks, each on its shard of every global batch with averaged gradients,
end where one process trained on the whole global batches ends (float32 reassociation
tolerance) -- with DistributedGradientTape (eager and tf.function, SGD and Adam) and with Keras
model.fit (DistributedOptimizer and herd.keras's callbacks). The one-process reference runs on
every rank, without herd."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import herd
import herd.keras as hk
import herd.tensorflow as hvd

R, N = herd.rank(), herd.size()
LOCAL = 6            # rows per rank per step
GLOBAL = LOCAL * N   # rows per step
STEPS = 4
RTOL, ATOL = 2e-5, 2e-6


def data(steps=STEPS):
    rng = np.random.RandomState(1234)
    x = rng.rand(GLOBAL * steps, 8).astype(np.float32)
    y = rng.randint(0, 3, size=GLOBAL * steps)
    return x, y


def shard(a, step):
    """This rank's rows of global batch `step`."""
    lo = step * GLOBAL + R * LOCAL
    return a[lo:lo + LOCAL]


def model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                             keras.layers.Dense(3)])


def optimizer(kind):
    return keras.optimizers.SGD(0.5, momentum=0.5) if kind == "sgd" else keras.optimizers.Adam(
        0.05)


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def assert_same_weights(a, b):
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), rtol=RTOL, atol=ATOL,
                                   err_msg=wa.path)


def single_process(kind, x, y):
    m, opt = model(), optimizer(kind)
    for s in range(STEPS):
        xb, yb = x[s * GLOBAL:(s + 1) * GLOBAL], y[s * GLOBAL:(s + 1) * GLOBAL]
        with tf.GradientTape() as tape:
            loss = LOSS(yb, m(xb))
        grads = tape.gradient(loss, m.trainable_variables)
        opt.apply_gradients(zip(grads, m.trainable_variables))
    return m


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_gradient_tape_matches_one_process(kind, mode):
    x, y = data()
    m, opt = model(seed=100 + R), optimizer(kind)  # different starting weights on every rank
    reference = model(seed=0)
    m.set_weights(reference.get_weights()) if R == 0 else None
    hvd.broadcast_variables(m.variables, root_rank=0)

    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = LOSS(yb, m(xb))
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, m.trainable_variables)
        opt.apply_gradients(zip(grads, m.trainable_variables))
        return loss

    if mode == "function":
        step = tf.function(step)
    for s in range(STEPS):
        step(shard(x, s), shard(y, s))
    assert_same_weights(m, single_process(kind, x, y))


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_keras_fit_matches_one_process(kind):
    epochs = 2
    x, y = data()
    reference = model(seed=0)
    reference.compile(optimizer=optimizer(kind), loss=LOSS)
    reference.fit(x, y, batch_size=GLOBAL, epochs=epochs, shuffle=False, verbose=0)

    m = model(seed=200 + R)  # broadcast by the callback
    m.compile(optimizer=hk.DistributedOptimizer(optimizer(kind)), loss=LOSS,
              metrics=["accuracy"])
    xs = np.concatenate([shard(x, s) for s in range(STEPS)])
    ys = np.concatenate([shard(y, s) for s in range(STEPS)])
    if R == 0:
        m.set_weights(model(seed=0).get_weights())
    history = m.fit(xs, ys, batch_size=LOCAL, epochs=epochs, shuffle=False, verbose=0,
                    callbacks=[hk.callbacks.BroadcastGlobalVariablesCallback(0),
                               hk.callbacks.MetricAverageCallback()])
    assert_same_weights(m, reference)
    # MetricAverageCallback: every rank reports the same (averaged) loss and accuracy.
    logged = np.array(history.history["loss"] + history.history["accuracy"])
    lo = hvd.allreduce(tf.constant(logged), op=hvd.Min).numpy()
    hi = hvd.allreduce(tf.constant(logged), op=hvd.Max).numpy()
    np.testing.assert_array_equal(lo, hi)


def test_distributed_optimizer_keeps_the_class_and_config():
    base = keras.optimizers.Adam(0.01, beta_1=0.8)
    opt = hvd.DistributedOptimizer(base)
    assert isinstance(opt, keras.optimizers.Adam)
    assert opt.get_config()["beta_1"] == pytest.approx(0.8)
    with pytest.raises(herd.NotSupportedError):
        hvd.DistributedOptimizer(base, backward_passes_per_step=2)
