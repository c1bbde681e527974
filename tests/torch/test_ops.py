"""herd.torch's ops: exact results for every op x dtype x shape, in place and async, scale
factors, broadcast, grouped allreduce, autograd rules, and the errors users meet."""

import itertools

import pytest
import torch

import herd
import herd.torch as hvd

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64]
OPS = [hvd.Average, hvd.Sum, hvd.Min, hvd.Max, hvd.Product]
SHAPES = [(), (0,), (3,), (2, 3, 4)]
OP_NAME = {hvd.Average: "avg", hvd.Sum: "sum", hvd.Min: "min", hvd.Max: "max",
           hvd.Product: "prod"}
_seq = itertools.count()


def uniq(base):
    """A name unique per call (the same sequence on every rank)."""
    return f"{base}.{next(_seq)}"


def values(rank, shape, dtype, op):
    """Small integers per rank whose sum/product/mean are exact in every dtype."""
    n = 1
    for d in shape:
        n *= d
    base = torch.arange(n, dtype=torch.float64).reshape(shape)
    if op == hvd.Product:
        v = (base % 2) + 1 + (rank % 2)          # 1..3: products stay small
    else:
        v = (base % 5) + 2 * rank - 3            # negatives too
    return v.to(dtype)


def expected(shape, dtype, op):
    n = herd.size()
    vals = [values(r, shape, torch.float64, op) for r in range(n)]
    st = torch.stack(vals) if vals[0].dim() else torch.stack([v.reshape(()) for v in vals])
    if op == hvd.Sum:
        e = st.sum(0)
    elif op == hvd.Min:
        e = st.min(0).values
    elif op == hvd.Max:
        e = st.max(0).values
    elif op == hvd.Product:
        e = st.prod(0)
    else:
        e = st.sum(0) / n
        if not dtype.is_floating_point:
            e = torch.trunc(e)
    return e


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS, ids=lambda o: OP_NAME[o])
def test_allreduce_exact(op, dtype, shape):
    t = values(hvd.rank(), shape, dtype, op)
    before = t.clone()
    out = hvd.allreduce(t, op=op, name=uniq("ar"))
    inplace = t.clone()
    back = hvd.allreduce_(inplace, op=op, name=uniq("ar_"))
    h = hvd.allreduce_async(t, op=op)
    h2 = hvd.allreduce_async_(t.clone(), op=op)
    out_async, out_async_ = hvd.synchronize(h), hvd.synchronize(h2)
    exp = expected(shape, dtype, op)
    if op == hvd.Average and dtype in (torch.float16, torch.bfloat16):
        exp = exp.to(dtype).to(torch.float64)  # the mean rounds to the dtype
    for r in (out, inplace, out_async, out_async_):
        assert r.dtype == dtype and r.shape == torch.Size(shape)
        assert torch.equal(r.to(torch.float64), exp), (r, exp)
    assert back is inplace
    assert torch.equal(t, before)  # out of place leaves the input alone


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int32], ids=str)
def test_prescale_postscale(dtype):
    n = herd.size()
    t = torch.full((5,), 4 * (hvd.rank() + 1), dtype=dtype)
    out = hvd.allreduce(t, op=hvd.Sum, prescale_factor=0.5, postscale_factor=3.0)
    exp = 3.0 * sum(2 * (r + 1) for r in range(n))
    assert torch.equal(out, torch.full((5,), exp, dtype=dtype))
    avg = hvd.allreduce_(t.clone(), op=hvd.Average, prescale_factor=2.0)
    exp_avg = sum(8 * (r + 1) for r in range(n)) / n
    if not dtype.is_floating_point:
        exp_avg = int(exp_avg)
    assert torch.equal(avg, torch.full((5,), exp_avg, dtype=dtype))


def test_average_is_default_and_deprecated_flag():
    t = torch.full((3,), float(hvd.rank()))
    mean = (herd.size() - 1) / 2
    assert torch.equal(hvd.allreduce(t), torch.full((3,), mean))
    assert torch.equal(hvd.allreduce(t, average=False), torch.full((3,), 2 * mean * 1.0 *
                                                                    herd.size() / 2))
    with pytest.raises(ValueError):
        hvd.allreduce(t, average=True, op=hvd.Sum)


def test_noncontiguous_out_of_place_is_copied():
    base = torch.arange(12.0).reshape(3, 4) + hvd.rank()
    t = base.t()  # not contiguous
    out = hvd.allreduce(t, op=hvd.Sum)
    exp = sum(torch.arange(12.0).reshape(3, 4) + r for r in range(herd.size())).t()
    assert torch.equal(out, exp)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_broadcast(dtype, shape):
    root = herd.size() - 1
    t = values(hvd.rank(), shape, dtype, hvd.Sum)
    out = hvd.broadcast(t, root, name=uniq("bc"))
    inplace = t.clone()
    hvd.broadcast_(inplace, root, name=uniq("bc_"))
    a = hvd.synchronize(hvd.broadcast_async(t, root))
    b = t.clone()
    hvd.synchronize(hvd.broadcast_async_(b, root))
    exp = values(root, shape, dtype, hvd.Sum)
    for r in (out, inplace, a, b):
        assert r.dtype == dtype and torch.equal(r, exp)


def test_grouped_allreduce():
    n = herd.size()
    ts = [torch.full((k + 1,), float(hvd.rank() + k)) for k in range(4)]
    outs = hvd.grouped_allreduce(ts, op=hvd.Sum)
    h = hvd.grouped_allreduce_async(ts, op=hvd.Max)
    mx = hvd.synchronize(h)
    inplace = [t.clone() for t in ts]
    hvd.grouped_allreduce_(inplace, op=hvd.Min)
    for k in range(4):
        assert torch.equal(outs[k], torch.full((k + 1,), float(sum(r + k for r in range(n)))))
        assert torch.equal(mx[k], torch.full((k + 1,), float(n - 1 + k)))
        assert torch.equal(inplace[k], torch.full((k + 1,), float(k)))


def test_poll_and_synchronize():
    t = torch.ones(1000)
    h = hvd.allreduce_async_(t, op=hvd.Sum)
    hvd.synchronize(h)
    assert hvd.poll(h)
    assert torch.equal(t, torch.full((1000,), float(herd.size())))
    with pytest.raises(herd.NotFoundError):
        hvd.synchronize(h)


def test_allreduce_grad_is_allreduce_of_grad():
    # y = allreduce(x, Sum); L = sum_ranks <w_r, y>; dL/dx on each rank = sum_r w_r.
    x = torch.arange(4.0, requires_grad=True)
    w = torch.full((4,), float(hvd.rank() + 1))
    y = hvd.allreduce(x * 1.0, op=hvd.Sum, name=uniq("grad.ar"))
    (y * w).sum().backward()
    assert torch.equal(x.grad, torch.full((4,), float(sum(r + 1 for r in range(herd.size())))))
    # Average: forward and backward both average.
    x.grad = None
    y = hvd.allreduce(x * 1.0, op=hvd.Average, name=uniq("grad.avg"))
    (y * w).sum().backward()
    mean_w = sum(r + 1 for r in range(herd.size())) / herd.size()
    assert torch.allclose(x.grad, torch.full((4,), mean_w), rtol=0, atol=1e-6)


def test_broadcast_grad_reaches_root_only():
    root = 0
    x = torch.arange(3.0, requires_grad=True)
    w = torch.full((3,), float(hvd.rank() + 1))
    y = hvd.broadcast(x * 1.0, root, name=uniq("grad.bc"))
    (y * w).sum().backward()
    mean_w = sum(r + 1 for r in range(herd.size())) / herd.size()
    exp = torch.full((3,), mean_w if hvd.rank() == root else 0.0)
    assert torch.allclose(x.grad, exp, rtol=0, atol=1e-6)


def test_autograd_gradcheck_sum():
    x = torch.randn(3, dtype=torch.float64, requires_grad=True, generator=torch.Generator()
                    .manual_seed(1))
    # Every rank holds the same x, so finite differences of allreduce(Sum) are n * identity.
    assert torch.autograd.gradcheck(lambda v: hvd.allreduce(v, op=hvd.Sum), (x,))


def test_compression_fp16_allreduce():
    t = torch.full((7,), 0.25 * (hvd.rank() + 1), dtype=torch.float32)
    out = hvd.allreduce(t, op=hvd.Sum, compression=hvd.Compression.fp16)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.full((7,), 0.25 * sum(r + 1 for r in range(herd.size()))))
    ints = torch.ones(3, dtype=torch.int32)
    assert torch.equal(hvd.allreduce(ints, op=hvd.Sum, compression=hvd.Compression.fp16),
                       torch.full((3,), herd.size(), dtype=torch.int32))


def test_inplace_noncontiguous_raises_naming_tensor():
    t = torch.zeros(4, 3).t()
    with pytest.raises(herd.InvalidArgumentError, match="allreduce.fc.weight.*contiguous"):
        hvd.allreduce_(t, name="fc.weight")
    with pytest.raises(herd.InvalidArgumentError, match="broadcast.w.*contiguous"):
        hvd.broadcast_(t, 0, name="w")


def test_unsupported_dtype_and_op():
    with pytest.raises(herd.InvalidArgumentError, match="complex64"):
        hvd.allreduce(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(herd.NotSupportedError, match="Adasum"):
        hvd.allreduce(torch.zeros(2), op=hvd.Adasum)


def test_shape_mismatch_names_tensor():
    # Same element count, different shapes: herd's count check alone would not notice.
    shape = (2, 3) if hvd.rank() == 0 else (3, 2)
    with pytest.raises(herd.MismatchError, match=r"allreduce.layer1.weight.*shape"):
        hvd.allreduce(torch.ones(shape), name="layer1.weight")
    if herd.size() > 1:
        n = 4 + hvd.rank()
        with pytest.raises(herd.MismatchError, match="allreduce.layer2.bias"):
            hvd.allreduce(torch.ones(n), name="layer2.bias")


def test_broadcast_object():
    obj = {"rank": hvd.rank(), "t": torch.arange(3), "s": "x" * (hvd.rank() + 1)}
    got = hvd.broadcast_object(obj, root_rank=herd.size() - 1)
    assert got["rank"] == herd.size() - 1 and got["s"] == "x" * herd.size()
    assert torch.equal(got["t"], torch.arange(3))
    assert hvd.broadcast_object(None) is None


def test_rank_queries():
    assert hvd.rank() == herd.rank() and hvd.size() == herd.size()
    assert 0 <= hvd.local_rank() < hvd.local_size() and hvd.is_initialized()


needs_issue9 = pytest.mark.skipif(not hasattr(herd, "allgather"),
                                  reason="needs issue 9 collectives")


@needs_issue9
def test_allgather_and_grad():
    n = herd.size()
    x = torch.full((hvd.rank() + 1, 2), float(hvd.rank()), requires_grad=True)
    y = hvd.allgather(x * 1.0)
    exp = torch.cat([torch.full((r + 1, 2), float(r)) for r in range(n)])
    assert torch.equal(y.detach(), exp)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


@needs_issue9
def test_allgather_object_alltoall_reducescatter_barrier():
    n = herd.size()
    assert hvd.allgather_object({"r": hvd.rank()}) == [{"r": r} for r in range(n)]
    t = torch.arange(n, dtype=torch.float32) + 10 * hvd.rank()
    out, splits = hvd.alltoall(t)
    assert torch.equal(out, torch.tensor([hvd.rank() + 10.0 * r for r in range(n)]))
    assert splits.tolist() == [1] * n
    rs = hvd.reducescatter(torch.ones(2 * n), op=hvd.Sum)
    assert torch.equal(rs, torch.full((2,), float(n)))
    out2, _ = hvd.synchronize(hvd.alltoall_async(t))
    assert torch.equal(out2, out)
    rs2 = hvd.synchronize(hvd.reducescatter_async(torch.ones(2 * n), op=hvd.Sum))
    assert torch.equal(rs2, rs)
    hvd.barrier()


@pytest.mark.skipif(not hasattr(herd, "join"), reason="needs issue 9 collectives")
def test_join_lets_the_others_finish():
    # Rank 0 has one more batch than the others; they join instead of hanging it.
    t = torch.full((4,), float(hvd.rank() + 1))
    first = hvd.allreduce(t, op=hvd.Sum, name="join.step0")
    if hvd.rank() == 0:
        second = hvd.allreduce(t, op=hvd.Sum, name="join.step1")
        assert torch.equal(second, t)  # joined ranks contribute zeros
    last = hvd.join()
    assert torch.equal(first, torch.full((4,), float(sum(range(1, herd.size() + 1)))))
    assert 0 <= last < herd.size()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_allreduce_and_broadcast():
    dev = torch.device("cuda", hvd.local_rank() % torch.cuda.device_count())
    t = torch.full((1000,), float(hvd.rank() + 1), device=dev)
    out = hvd.allreduce(t, op=hvd.Sum)
    assert out.device == dev
    assert torch.equal(out.cpu(), torch.full((1000,), float(sum(range(1, herd.size() + 1)))))
    b = hvd.broadcast(t, 0)
    assert torch.equal(b.cpu(), torch.ones(1000))
    h = hvd.allreduce_async_(t, op=hvd.Max)
    hvd.synchronize(h)  # ordered on the current stream; .cpu() synchronizes with it
    assert torch.equal(t.cpu(), torch.full((1000,), float(herd.size())))


def test_grouped_allreduce_named_and_differentiable():
    n = herd.size()
    x = torch.ones(3, requires_grad=True)
    ys = hvd.grouped_allreduce([x * float(hvd.rank() + 1), torch.full((2,), 1.0)], op=hvd.Sum,
                               name="grp")
    total = float(sum(r + 1 for r in range(n)))
    assert torch.equal(ys[0].detach(), torch.full((3,), total))
    assert torch.equal(ys[1], torch.full((2,), float(n)))
    ys[0].sum().backward()  # d/dx of sum_r (r+1) x summed over ranks' backward: (rank+1) * n
    assert torch.equal(x.grad, torch.full((3,), float((hvd.rank() + 1) * n)))


@pytest.mark.skipif(hasattr(herd, "allgather"), reason="issue 9 collectives are present")
def test_issue9_ops_say_what_they_need():
    t = torch.ones(2)
    calls = [lambda: hvd.allgather(t), lambda: hvd.alltoall(t), lambda: hvd.reducescatter(t),
             lambda: hvd.barrier(), lambda: hvd.join(), lambda: hvd.allgather_object(1)]
    for call in calls:
        with pytest.raises(herd.NotSupportedError, match="issue 9"):
            call()
