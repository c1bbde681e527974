"""herd.tensorflow's ops: every op x dtype, eagerly and inside tf.function, their gradients,
and mismatches across ranks (which must raise on every rank, never hang)."""

import numpy as np
import pytest
import tensorflow as tf

import herd
import herd.tensorflow as hvd

DTYPES = [tf.uint8, tf.int8, tf.int32, tf.int64, tf.float16, tf.bfloat16, tf.float32,
          tf.float64]
IDS = [d.name for d in DTYPES]
MODES = ["eager", "function"]
R, N = herd.rank(), herd.size()


def run(mode, fn, *args):
    """fn(*args) eagerly, or inside a fresh tf.function."""
    if mode == "eager":
        return fn(*args)
    return tf.function(fn)(*args)


def f64(t):
    return tf.cast(t, tf.float64).numpy()


def tol(dtype):
    return {tf.float16: 1e-3, tf.bfloat16: 1e-2}.get(dtype, 1e-12)


def base(shape=(2, 3), r=R):
    return (np.arange(int(np.prod(shape))).reshape(shape) % 5 + r + 1).astype(np.float64)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("op", ["Sum", "Average", "Min", "Max", "Product"])
def test_allreduce(dtype, op, mode):
    hop = getattr(hvd, op)
    if op == "Product":
        per_rank = [1 + (np.arange(6).reshape(2, 3) + r) % 2 for r in range(N)]
    else:
        per_rank = [base(r=r) for r in range(N)]
    stack = np.stack(per_rank).astype(np.float64)
    expected = {"Sum": stack.sum(0), "Min": stack.min(0), "Max": stack.max(0),
                "Product": stack.prod(0), "Average": stack.sum(0) / N}[op]
    if op == "Average" and dtype.is_integer:
        expected = np.trunc(expected)
    x = tf.constant(per_rank[R], dtype=dtype)
    out = run(mode, lambda t: hvd.allreduce(t, op=hop), x)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(f64(out), expected, rtol=tol(dtype))


@pytest.mark.parametrize("mode", MODES)
def test_allreduce_scaled_named_and_compressed(mode):
    x = tf.constant(base(), tf.float32)

    def fn(t):
        a = hvd.allreduce(t, op=hvd.Sum, prescale_factor=2.0, postscale_factor=0.25, name="sc")
        b = hvd.allreduce(t, average=True, compression=hvd.Compression.fp16)
        return a, b

    a, b = run(mode, fn, x)
    total = sum(base(r=r) for r in range(N))
    np.testing.assert_allclose(a.numpy(), total * 0.5, rtol=1e-6)
    assert b.dtype == tf.float32
    np.testing.assert_allclose(b.numpy(), total / N, rtol=1e-3)


@pytest.mark.parametrize("mode", MODES)
def test_grouped_allreduce_mixed_dtypes(mode):
    xs = [tf.constant(base((4,)), d) for d in (tf.float32, tf.int64, tf.bfloat16)]
    xs.append(tf.constant(float(R)))  # a scalar
    outs = run(mode, lambda *t: hvd.grouped_allreduce(list(t), op=hvd.Sum), *xs)
    total = sum(base((4,), r=r) for r in range(N))
    for o, x in zip(outs[:3], xs):
        assert o.dtype == x.dtype and o.shape == x.shape
        np.testing.assert_allclose(f64(o), total, rtol=tol(x.dtype))
    assert float(outs[3]) == sum(range(N))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_allgather(dtype, mode):
    # Rank r gives r + 1 rows of 2: first dimensions differ across ranks.
    def rows(r):
        return (np.arange(2 * (r + 1)).reshape(r + 1, 2) + 10 * r) % 100

    x = tf.constant(rows(R), dtype)
    out = run(mode, hvd.allgather, x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(f64(out), np.concatenate([rows(r) for r in range(N)]))
    scalars = run(mode, hvd.allgather, tf.constant(R + 1, dtype))
    np.testing.assert_array_equal(f64(scalars), np.arange(1, N + 1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_broadcast(dtype, mode):
    root = N - 1
    x = tf.constant(base((3, 2)), dtype)
    out = run(mode, lambda t: hvd.broadcast(t, root_rank=root), x)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_array_equal(f64(out), base((3, 2), r=root))
    # The input is not modified, on any rank.
    np.testing.assert_array_equal(f64(x), base((3, 2)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_alltoall(dtype, mode):
    # Rank r sends d + 1 rows to rank d; a row from s to d holds s * 10 + d (twice).
    rows = np.concatenate([np.full((d + 1, 2), R * 10 + d) for d in range(N)])
    splits = [d + 1 for d in range(N)]
    out, received = run(mode, lambda t: hvd.alltoall(t, splits=splits), tf.constant(rows, dtype))
    np.testing.assert_array_equal(received.numpy(), [R + 1] * N)
    expected = np.concatenate([np.full((R + 1, 2), s * 10 + R) for s in range(N)])
    np.testing.assert_array_equal(f64(out), expected)
    # Equal blocks without splits.
    eq = np.repeat(np.arange(N) + 10 * R, 2).reshape(2 * N, 1) % 100
    out, received = run(mode, hvd.alltoall, tf.constant(eq, dtype))
    np.testing.assert_array_equal(received.numpy(), [2] * N)
    np.testing.assert_array_equal(f64(out).ravel(),
                                  np.repeat([(R + 10 * s) % 100 for s in range(N)], 2))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_reducescatter(dtype, mode):
    rows = 2 * N + 1  # uneven: rank 0 gets one row more
    x = tf.constant(base((rows, 2)), dtype)
    op = hvd.Average if dtype.is_floating else hvd.Sum
    out = run(mode, lambda t: hvd.reducescatter(t, op=op), x)
    total = sum(base((rows, 2), r=r) for r in range(N))
    if op == hvd.Average:
        total = total / N
    start = sum(rows // N + (1 if r < rows % N else 0) for r in range(R))
    mine = rows // N + (1 if R < rows % N else 0)
    assert out.shape == (mine, 2)
    np.testing.assert_allclose(f64(out), total[start:start + mine], rtol=tol(dtype))


# ---- gradients ---------------------------------------------------------------------------


def grad_of(mode, fn, x):
    def g(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            loss = fn(v)
        return tape.gradient(loss, v)

    return run(mode, g, x)


@pytest.mark.parametrize("mode", MODES)
def test_allreduce_gradient(mode):
    c = tf.constant(base((3,)), tf.float64)  # a different weight on every rank
    x = tf.constant([1.0, 2.0, 3.0], tf.float64)
    g = grad_of(mode, lambda v: tf.reduce_sum(hvd.allreduce(v * 2.0, op=hvd.Sum) * c), x)
    # d/dx: the Sum allreduce of the output's gradient (c), times 2.
    np.testing.assert_allclose(g.numpy(), 2.0 * sum(base((3,), r=r) for r in range(N)))
    g = grad_of(mode, lambda v: tf.reduce_sum(hvd.grouped_allreduce([v], op=hvd.Average)[0] * c),
                x)
    np.testing.assert_allclose(g.numpy(), sum(base((3,), r=r) for r in range(N)) / N)


@pytest.mark.parametrize("mode", MODES)
def test_allgather_gradient(mode):
    x = tf.constant(np.ones((R + 1, 2)), tf.float64)
    total = N * (N + 1) // 2

    def loss(v):
        coef = tf.reshape(tf.range(2 * total, dtype=tf.float64), (total, 2)) + R
        return tf.reduce_sum(hvd.allgather(v) * coef)

    g = grad_of(mode, loss, x)
    # The Average allreduce of coef (rank-dependent by + R), then this rank's rows.
    avg = np.arange(2 * total).reshape(total, 2) + (N - 1) / 2
    start = R * (R + 1) // 2
    np.testing.assert_allclose(g.numpy(), avg[start:start + R + 1])


@pytest.mark.parametrize("mode", MODES)
def test_broadcast_gradient(mode):
    root = 0
    x = tf.constant([1.0, 2.0], tf.float64)
    g = grad_of(mode, lambda v: tf.reduce_sum(hvd.broadcast(v, root) * (R + 1)), x)
    # The Average allreduce of the output's gradient (R + 1) on the root, zeros elsewhere.
    expected = (N + 1) / 2 if R == root else 0.0
    np.testing.assert_allclose(g.numpy(), [expected, expected])


@pytest.mark.parametrize("mode", MODES)
def test_alltoall_and_reducescatter_gradients(mode):
    x = tf.constant(np.arange(2 * N, dtype=np.float64).reshape(2 * N, 1))
    g = grad_of(mode, lambda v: tf.reduce_sum(hvd.alltoall(v)[0] * (R + 1)), x)
    # Row block d went to rank d, whose weight is d + 1.
    np.testing.assert_allclose(g.numpy().ravel(), np.repeat(np.arange(N) + 1.0, 2))
    g = grad_of(mode, lambda v: tf.reduce_sum(hvd.reducescatter(v, op=hvd.Sum) * (R + 1)), x)
    np.testing.assert_allclose(g.numpy().ravel(), np.repeat(np.arange(N) + 1.0, 2))


# ---- errors ------------------------------------------------------------------------------


def expect_mismatch(mode, fn, *args, match=""):
    with pytest.raises(tf.errors.FailedPreconditionError, match="HERD_ERR_MISMATCH: " + match):
        out = run(mode, fn, *args)
        tf.nest.map_structure(lambda t: t.numpy(), out)


@pytest.mark.parametrize("mode", MODES)
def test_mismatches_raise_on_every_rank(mode):
    # Count.
    expect_mismatch(mode, lambda t: hvd.allreduce(t, name="count"), tf.ones([R + 2]))
    # Shape with the same count: herd compares counts; the op compares shapes too.
    shape = [2, 3] if R == 0 else [3, 2]
    expect_mismatch(mode, lambda t: hvd.allreduce(t, name="shape"), tf.ones(shape),
                    match=r"tensor 'allreduce.shape': ranks disagree on its shape: rank 0 has "
                          r"\[2, 3\], rank 1 has \[3, 2\]")
    # Number of dimensions with the same count.
    expect_mismatch(mode, lambda t: hvd.allreduce(t, name="ndims"),
                    tf.ones([6] if R == 0 else [2, 3]), match="tensor 'allreduce.ndims': ranks "
                    "disagree on its number of dimensions")
    # Dtype.
    dtype = tf.float32 if R == 0 else tf.float64
    expect_mismatch(mode, lambda t: hvd.allreduce(t, name="dtype"), tf.ones([4], dtype))
    # Op.
    op = hvd.Sum if R == 0 else hvd.Max
    expect_mismatch(mode, lambda t: hvd.allreduce(t, op=op, name="op"), tf.ones([4]))
    # Root.
    expect_mismatch(mode, lambda t: hvd.broadcast(t, R, name="root"), tf.ones([4]))
    # Trailing dimensions of an allgather: herd compares the row size, the op the dims.
    expect_mismatch(mode, lambda t: hvd.allgather(t, name="row"),
                    tf.ones([1, 2] if R == 0 else [1, 3]), match="tensor 'allgather.row'")
    expect_mismatch(mode, lambda t: hvd.allgather(t, name="trailing"),
                    tf.ones([R + 1, 2, 3] if R == 0 else [R + 1, 3, 2]),
                    match=r".*rank 0 has \[\*, 2, 3\], rank 1 has \[\*, 3, 2\]")
    # Grouped: one member's shape.
    expect_mismatch(mode, lambda a, b: hvd.grouped_allreduce([a, b], name="grp"),
                    tf.ones([2]), tf.ones(shape))
    # herd is still usable afterwards.
    out = run(mode, lambda t: hvd.allreduce(t, op=hvd.Sum, name="after"), tf.ones([3]))
    np.testing.assert_array_equal(out.numpy(), [N] * 3)


def test_rejected_at_the_call():
    with pytest.raises(herd.InvalidArgumentError, match="bool"):
        hvd.allreduce(tf.constant([True]))
    with pytest.raises(herd.InvalidArgumentError, match="string"):
        hvd.broadcast(tf.constant(["a"]), 0)
    with pytest.raises(herd.NotSupportedError, match="Adasum"):
        hvd.allreduce(tf.ones([2]), op=hvd.Adasum)
    with pytest.raises(tf.errors.InvalidArgumentError, match="splits"):
        hvd.alltoall(tf.ones([N, 1]), splits=[N + 1] + [0] * (N - 1))


def test_sparse_allreduce():
    values = tf.constant([[float(R)]])
    s = tf.IndexedSlices(values, tf.constant([R], tf.int64), dense_shape=tf.constant([N, 1],
                                                                                    tf.int64))
    out = hvd.allreduce(s, op=hvd.Sum)
    np.testing.assert_array_equal(tf.convert_to_tensor(out).numpy().ravel(), np.arange(N))


def test_broadcast_variables():
    v = tf.Variable(base((2, 2)))
    w = tf.Variable(tf.constant([R, R], tf.int32))
    hvd.broadcast_variables([v, w], root_rank=N - 1)
    np.testing.assert_array_equal(v.numpy(), base((2, 2), r=N - 1))
    np.testing.assert_array_equal(w.numpy(), [N - 1, N - 1])

    @tf.function
    def in_function():
        hvd.broadcast_variables([v], root_rank=0)

    v.assign(base((2, 2)))
    in_function()
    np.testing.assert_array_equal(v.numpy(), base((2, 2), r=0))


def test_many_ops_in_one_function_keep_program_order():
    # More collectives than TensorFlow has inter-op threads (2 here), independent of each other:
    # program order (automatic control dependencies on stateful ops) keeps every rank's order.
    @tf.function
    def many(x):
        return [hvd.allreduce(x + i, op=hvd.Sum) for i in range(12)]

    outs = many(tf.constant(float(R)))
    assert [float(o) for o in outs] == [sum(range(N)) + N * i for i in range(12)]


@pytest.mark.parametrize("mode", MODES)
def test_empty_tensors(mode):
    def fn(a, b):
        return (hvd.allreduce(a, op=hvd.Sum), hvd.broadcast(a, 0), hvd.grouped_allreduce([a, a]),
                hvd.allgather(b))

    # Every rank empty for the reductions; allgather rows: rank r gives r rows (rank 0 none).
    out = run(mode, fn, tf.zeros([0, 3]), tf.ones([R, 3]))
    assert out[0].shape == (0, 3) and out[1].shape == (0, 3) and out[2][0].shape == (0, 3)
    assert out[3].shape == (N * (N - 1) // 2, 3)


def test_host_side_helpers():
    assert hvd.broadcast_object({"r": R}, root_rank=N - 1) == {"r": N - 1}
    assert hvd.allgather_object(R * 2) == [2 * r for r in range(N)]
    hvd.barrier()
