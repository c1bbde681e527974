"""allgather, reducescatter, alltoall, barrier, join, grouped_push_pull, scaling and objects:
every dtype, exact results against what every rank computes for every other rank."""

import numpy as np
import pytest

import herd
from herdtest import DTYPES, FLOATS, OPS, WAIT, as_float64, kwargs, make, storage


def _rank_values(rank, count, dtype, salt=0):
    """Rank `rank`'s integer values, small enough for every dtype and every sum of 3 ranks."""
    i = np.arange(count, dtype=np.int64)
    v = (5 * i + 7 * rank + salt) % 13
    return v if dtype == "uint8" else v - 6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows_of", ["same", "rank+1", "rank1-empty"])
def test_allgather_concatenates_rows_in_rank_order(dtype, rows_of):
    n, me = herd.size(), herd.rank()

    def rows(r):
        return {"same": 2, "rank+1": r + 1, "rank1-empty": 0 if r == 1 else 3}[rows_of]

    trailing = (2, 3)
    per_row = 6
    mine = make(_rank_values(me, rows(me) * per_row, dtype, 1), dtype).reshape(
        (rows(me),) + trailing)
    before = mine.copy()
    got = herd.allgather(mine, name=f"ag.{dtype}.{rows_of}", timeout=WAIT, **kwargs(dtype))
    want = np.concatenate([
        make(_rank_values(r, rows(r) * per_row, dtype, 1), dtype).reshape((rows(r),) + trailing)
        for r in range(n)])
    assert got.shape == want.shape and got.dtype == storage(dtype)
    assert np.array_equal(as_float64(got, dtype), as_float64(want, dtype))
    assert np.array_equal(mine, before)


def test_allgather_of_scalars_and_0d():
    n, me = herd.size(), herd.rank()
    got = herd.allgather(np.float32(me + 0.5), name="ag.scalar", timeout=WAIT)
    assert got.shape == (n,) and got.dtype == np.float32
    assert got.tolist() == [r + 0.5 for r in range(n)]
    got = herd.allgather(np.array(me, dtype=np.int64), name="ag.0d", timeout=WAIT)
    assert got.tolist() == list(range(n))


def test_allgather_async_handle():
    n, me = herd.size(), herd.rank()
    h = herd.allgather_async(np.full(3, me, dtype=np.int32), name="ag.async")
    assert isinstance(h, herd.Handle)
    got = h.wait(WAIT)
    assert got.tolist() == [r for r in range(n) for _ in range(3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("rows", [0, 1, 5, 6])
def test_reducescatter_splits_rows_like_horovod(dtype, op, rows):
    n, me = herd.size(), herd.rank()
    trailing = (4,)
    count = rows * 4

    def inputs(r):
        v = _rank_values(r, count, dtype, 3)
        if op == "product":
            v = 1 + (v % 2)
            if dtype != "uint8":
                v = np.where(np.arange(count) % 3 == r % 3, -v, v)
        if op == "average" and dtype in FLOATS:
            # the same values on every rank plus offsets that sum to zero: the mean is exact
            v = _rank_values(0, count, dtype, 3) + (2 * r - (n - 1))
        return v

    x = make(inputs(me), dtype).reshape((rows,) + trailing)
    before = x.copy()
    got = herd.reducescatter(x, op=op, name=f"rs.{dtype}.{op}.{rows}", timeout=WAIT,
                             **kwargs(dtype))
    all_v = np.stack([inputs(r) for r in range(n)]).reshape((n, rows) + trailing)
    if op in ("sum", "average"):
        full = all_v.sum(axis=0)
        if op == "average":
            full = full / n if dtype in FLOATS else np.trunc(full / n)
    elif op == "min":
        full = all_v.min(axis=0)
    elif op == "max":
        full = all_v.max(axis=0)
    else:
        full = all_v.prod(axis=0)
    first = sum(rows // n + (r < rows % n) for r in range(me))
    mine = rows // n + (me < rows % n)
    want = full[first:first + mine]
    assert got.shape == (mine,) + trailing
    assert np.array_equal(as_float64(got, dtype), want.astype(np.float64))
    assert np.array_equal(x, before)


def test_reducescatter_default_is_average_and_refuses_0d():
    n = herd.size()
    got = herd.reducescatter(np.full((n, 2), 4.0 * (herd.rank() + 1)), name="rs.default",
                             timeout=WAIT)
    assert got.tolist() == [[2.0 * (n + 1)] * 2]
    with pytest.raises(herd.InvalidArgumentError, match="at least one dimension"):
        herd.reducescatter(np.float64(1.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_alltoall_with_and_without_splits(dtype):
    n, me = herd.size(), herd.rank()
    # Equal parts: rank `me` sends rank d two rows of (me, d) values.
    rows = np.array([[10 * me + d, d] for d in range(n) for _ in range(2)], dtype=np.int64)
    x = make(rows.reshape(-1) % 50, dtype).reshape(2 * n, 2)
    got, splits = herd.alltoall(x, name=f"a2a.{dtype}", timeout=WAIT, **kwargs(dtype))
    want = np.array([[10 * s + me, me] for s in range(n) for _ in range(2)]) % 50
    assert splits.tolist() == [2] * n
    assert np.array_equal(as_float64(got, dtype), want.astype(np.float64))
    # Uneven: rank me sends (me + d) % 3 rows to rank d.
    sp = [(me + d) % 3 for d in range(n)]
    vals = np.concatenate([np.full((k, 3), 10 * me + d) for d, k in enumerate(sp)]) % 50
    x = make(vals.reshape(-1), dtype).reshape(-1, 3)
    got, splits = herd.alltoall(x, splits=sp, name=f"a2av.{dtype}", timeout=WAIT,
                                **kwargs(dtype))
    recv_sp = [(s + me) % 3 for s in range(n)]
    assert splits.tolist() == recv_sp
    want = np.concatenate([np.full((k, 3), 10 * s + me) for s, k in enumerate(recv_sp)]) % 50
    assert got.shape == (sum(recv_sp), 3)
    assert np.array_equal(as_float64(got, dtype).reshape(-1, 3), want.astype(np.float64))


def test_alltoall_bad_splits():
    n = herd.size()
    with pytest.raises(herd.InvalidArgumentError, match="one per rank"):
        herd.alltoall(np.zeros((n, 1)), splits=[1] * (n + 1))
    with pytest.raises(herd.InvalidArgumentError, match="sum to"):
        herd.alltoall(np.zeros((n, 1)), splits=[2] * n)
    if n > 1:
        with pytest.raises(herd.InvalidArgumentError, match="splits="):
            herd.alltoall(np.zeros((n + 1, 1)))


@pytest.mark.parametrize("dtype", ["int32", "float16", "bfloat16", "float32", "float64"])
def test_push_pull_prescale_and_postscale(dtype):
    n, me = herd.size(), herd.rank()
    v = make(_rank_values(me, 9, dtype, 5), dtype)
    total = sum(_rank_values(r, 9, dtype, 5) for r in range(n)).astype(np.float64)
    if dtype in FLOATS:
        got = herd.push_pull(v, name=f"scale.{dtype}", prescale=2.0, postscale=0.5,
                             timeout=WAIT, **kwargs(dtype))
        assert np.array_equal(as_float64(got, dtype), total)
        got = herd.push_pull(v, name=f"scale2.{dtype}", prescale=2.0, timeout=WAIT,
                             **kwargs(dtype))
        assert np.array_equal(as_float64(got, dtype), 2 * total)
    else:
        got = herd.push_pull(v, name=f"scale.{dtype}", prescale=-1.0, timeout=WAIT)
        assert np.array_equal(got.astype(np.float64), -total)
        got = herd.push_pull(v, name=f"scale2.{dtype}", postscale=0.5, timeout=WAIT)
        assert np.array_equal(got.astype(np.float64), np.trunc(total * 0.5))
    with pytest.raises(herd.InvalidArgumentError, match="finite"):
        herd.push_pull(v, prescale=float("nan"), **kwargs(dtype))


def test_push_pull_of_a_numpy_scalar_and_python_number():
    n = herd.size()
    got = herd.push_pull(np.float32(1.5), name="scalar.np", op="sum", timeout=WAIT)
    assert isinstance(got, np.float32) and got == 1.5 * n
    got = herd.push_pull(2, name="scalar.int", timeout=WAIT)
    assert got == 2 * n and isinstance(got, np.int64)
    got = herd.push_pull(np.array(3.0), name="scalar.0d", op="average", timeout=WAIT)
    assert got.shape == () and got == 3.0
    with pytest.raises(herd.InvalidArgumentError, match="read-only"):
        x = np.float32(1.0)
        herd.push_pull(x, out=x)


def test_grouped_push_pull():
    n, me = herd.size(), herd.rank()
    arrays = [np.full(k + 1, float(me + k)) for k in range(6)]
    got = herd.grouped_push_pull(arrays, op="sum", timeout=WAIT)
    for k, g in enumerate(got):
        assert g.tolist() == [sum(r + k for r in range(n))] * (k + 1)
    hs = herd.grouped_push_pull_async([np.ones(2), np.ones(3)], op="average",
                                      names=["grp.a", "grp.b"])
    assert [h.wait(WAIT).tolist() for h in hs] == [[1.0] * 2, [1.0] * 3]
    with pytest.raises(herd.InvalidArgumentError):
        herd.grouped_push_pull([np.ones(2), "not an array"], names=["grp.c", "grp.d"])
    with pytest.raises(herd.InvalidArgumentError, match="names has"):
        herd.grouped_push_pull([np.ones(2)], names=["a", "b"])


def test_objects():
    n, me = herd.size(), herd.rank()
    obj = herd.broadcast_object({"rank": me, "data": list(range(me + 3))}, root=n - 1)
    assert obj == {"rank": n - 1, "data": list(range(n + 2))}
    assert herd.allgather_object(("r", me, "x" * me)) == [("r", r, "x" * r) for r in range(n)]


def test_barrier_and_async_forms():
    herd.barrier()
    herd.barrier(name="named.barrier", timeout=WAIT)
    assert herd.barrier_async().wait(WAIT) is None


def test_mismatch_raises_on_every_rank():
    if herd.size() < 2:
        pytest.skip("needs two ranks")
    rows = 2 + (herd.rank() == 1)
    with pytest.raises(herd.MismatchError, match="ranks disagree"):
        herd.allgather(np.zeros((rows, 2 + (herd.rank() == 1))), name="mm.ag", timeout=WAIT)
    with pytest.raises(herd.MismatchError):
        herd.reducescatter(np.zeros((4, 1 + herd.rank())), name="mm.rs", timeout=WAIT)


def test_join_with_uneven_batches():
    """Rank r has 2 + r batches; ranks out of data join, the others finish their epoch with the
    averages taken over the ranks that still had data."""
    n, me = herd.size(), herd.rank()
    sums = []
    for step in range(2 + me):
        active = [r for r in range(n) if 2 + r > step]
        g = herd.push_pull(np.full(3, float(me + step)), name="join.grad", op="average",
                           timeout=WAIT)
        sums.append((g.tolist(), [float(np.mean([r + step for r in active]))] * 3))
        gathered = herd.allgather(np.array([me]), name="join.ag", timeout=WAIT)
        sums.append((gathered.tolist(), active))  # a joined rank's part is empty
    last = herd.join()
    assert last == n - 1
    for got, want in sums:
        assert got == want
