"""broadcast: from every root, every dtype, sync and async."""

import numpy as np
import pytest

import herd
from herdtest import DTYPES, WAIT, as_float64, kwargs, make


def _data(rank, count):
    return (np.arange(count) * 3 + 11 * rank) % 100 - 20  # exact in every dtype but uint8


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_every_root(dtype):
    r, n = herd.rank(), herd.size()
    count = 129
    got = []
    for root in range(n):
        values = _data(r, count) % 100 if dtype == "uint8" else _data(r, count)
        buf = make(values, dtype)
        got.append(herd.broadcast(buf, root, name=f"bc.{dtype}.{root}", timeout=WAIT,
                                  **kwargs(dtype)))
    for root in range(n):
        want = _data(root, count) % 100 if dtype == "uint8" else _data(root, count)
        assert np.array_equal(as_float64(got[root], dtype), want), (dtype, root)


def test_async_from_every_root_at_once():
    r, n = herd.rank(), herd.size()
    bufs = [np.full((4, 5), 100 * r + root, np.int64) for root in range(n)]
    handles = [herd.broadcast_async(bufs[root], root, name=f"bc.async.{root}")
               for root in range(n)]
    results = [h.wait(WAIT) for h in reversed(handles)][::-1]
    for root in range(n):
        assert results[root] is bufs[root]
        assert np.all(bufs[root] == 100 * root + root)


def test_unnamed_broadcasts_and_empty():
    r = herd.rank()
    a = np.full(3, r, np.float32)
    h = herd.broadcast_async(a, 0)
    empty = herd.broadcast(np.zeros(0, np.int32), 0, timeout=WAIT)
    h.wait(WAIT)
    assert h.name.startswith("broadcast.noname.")
    assert np.all(a == 0) and empty.shape == (0,)


def test_broadcast_of_weights_then_training_step():
    """The pattern of a training loop: broadcast initial weights, then average gradients."""
    r, n = herd.rank(), herd.size()
    w = np.random.default_rng(r).standard_normal(64).astype(np.float32)
    herd.broadcast(w, 0, name="bcw.w", timeout=WAIT)
    g = np.full(64, r, np.float32)
    herd.push_pull(g, name="bcw.g", op="sum", out=g, timeout=WAIT)
    w0 = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    assert np.array_equal(w, w0)
    assert np.all(g == n * (n - 1) // 2)
