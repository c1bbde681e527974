"""DistributedOptimizer and the state broadcasts, checked against one process.

N ranks, each training on its 1/N of a global batch with DistributedOptimizer, must end with the
parameters one process gets by training on the whole batch (every rank computes that reference
itself, with plain torch, from the same seed).
"""

import itertools

import pytest
import torch

import herd
import herd.torch as hvd

GLOBAL_BATCH = 24  # divisible by 1, 2, 3, 4 ranks and by 2 micro-batches
STEPS = 4
_seq = itertools.count()


class Net(torch.nn.Module):
    def __init__(self, dtype=torch.float64, unused=False):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.fc1 = torch.nn.Linear(6, 8).to(dtype)
        self.fc2 = torch.nn.Linear(8, 3).to(dtype)
        if unused:
            self.extra = torch.nn.Linear(3, 3).to(dtype)  # never used in forward
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype))

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def data(dtype):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(STEPS, GLOBAL_BATCH, 6, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, 3, (STEPS, GLOBAL_BATCH), generator=g)
    return x, y


def make_opt(kind, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)
    return torch.optim.Adam(params, lr=0.01)


def reference(kind, dtype, unused=False):
    model = Net(dtype, unused)
    opt = make_opt(kind, model.parameters())
    x, y = data(dtype)
    for s in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[s]), y[s]).backward()
        opt.step()
    return model


def distributed(kind, dtype, passes=1, unused=False, **kw):
    model = Net(dtype, unused)
    opt = hvd.DistributedOptimizer(make_opt(kind, model.parameters()),
                                   named_parameters=[(f"t{next(_seq)}.{n}", p)
                                                     for n, p in model.named_parameters()],
                                   backward_passes_per_step=passes, **kw)
    x, y = data(dtype)
    n, r = herd.size(), herd.rank()
    per = GLOBAL_BATCH // n
    for s in range(STEPS):
        opt.zero_grad()
        xs, ys = x[s, r * per:(r + 1) * per], y[s, r * per:(r + 1) * per]
        m = per // passes
        for k in range(passes):
            out = model(xs[k * m:(k + 1) * m])
            loss = torch.nn.functional.cross_entropy(out, ys[k * m:(k + 1) * m]) / passes
            loss.backward()
        opt.step()
    return model, opt


def assert_same(a, b, tol):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        err = (p.detach().double() - q.detach().double()).abs().max().item()
        assert err <= tol, f"{name}: max abs difference {err} > {tol}"


@pytest.mark.parametrize("bucket", [True, False], ids=["bucketview", "pergrad"])
@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_equivalent_to_one_process(kind, passes, bucket):
    model, opt = distributed(kind, torch.float64, passes, gradient_as_bucket_view=bucket)
    assert isinstance(opt, torch.optim.SGD if kind == "sgd" else torch.optim.Adam)
    assert bool(opt._buckets) == bucket
    assert_same(model, reference(kind, torch.float64), 1e-12)


def test_bucket_view_is_default_and_grads_are_views():
    model = Net()
    opt = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                                   named_parameters=[(f"v{next(_seq)}.{n}", p)
                                                     for n, p in model.named_parameters()])
    assert opt._buckets
    flat = opt._buckets[0].flat
    base = flat.data_ptr()
    end = base + flat.numel() * flat.element_size()
    x, y = data(torch.float64)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x[0]), y[0]).backward()
    opt.step()
    for p in model.parameters():
        assert base <= p.grad.data_ptr() < end  # reduced where it lies, never copied


@pytest.mark.parametrize("groups", [2, "list"])
def test_groups(groups):
    if groups == "list":
        groups = None  # replaced below with the model's parameters
    model = Net()
    if groups is None:
        ps = list(model.parameters())
        groups = [ps[:1], ps[1:]]
    opt = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                                   named_parameters=[(f"g{next(_seq)}.{n}", p)
                                                     for n, p in model.named_parameters()],
                                   groups=groups)
    assert not opt._buckets
    x, y = data(torch.float64)
    n, r = herd.size(), herd.rank()
    per = GLOBAL_BATCH // n
    for s in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[s, r * per:(r + 1) * per]),
                                          y[s, r * per:(r + 1) * per]).backward()
        opt.step()
    assert_same(model, reference("sgd", torch.float64), 1e-12)


def test_predivide():
    model, _ = distributed("sgd", torch.float64, gradient_predivide_factor=float(herd.size()))
    assert_same(model, reference("sgd", torch.float64), 1e-12)
    model, _ = distributed("sgd", torch.float64, gradient_predivide_factor=float(herd.size()),
                           gradient_as_bucket_view=False)
    assert_same(model, reference("sgd", torch.float64), 1e-12)


def test_fp16_compression():
    model, opt = distributed("sgd", torch.float32, compression=hvd.Compression.fp16)
    assert not opt._buckets
    ref = reference("sgd", torch.float32)
    assert_same(model, ref, 5e-3)
    # and it is not simply the uncompressed result
    exact, _ = distributed("sgd", torch.float32, gradient_as_bucket_view=False)
    assert_same(exact, ref, 1e-5)


def test_sum_op_scales_by_size():
    model, _ = distributed("sgd", torch.float64, op=hvd.Sum)
    ref = Net()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1 * herd.size(), momentum=0.9)
    x, y = data(torch.float64)
    for s in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(x[s]), y[s]).backward()
        opt.step()
    assert_same(model, ref, 1e-12)


@pytest.mark.parametrize("bucket", [True, False], ids=["bucketview", "pergrad"])
def test_unused_parameter_does_not_hang(bucket):
    model, opt = distributed("sgd", torch.float64, unused=True, gradient_as_bucket_view=bucket)
    ref = reference("sgd", torch.float64, unused=True)
    assert_same(model, ref, 1e-12)


def test_parameter_used_on_one_rank_only():
    model = Net()
    opt = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=1.0),
                                   named_parameters=[(f"u{next(_seq)}.{n}", p)
                                                     for n, p in model.named_parameters()],
                                   gradient_as_bucket_view=False)
    w0 = model.fc1.weight.detach().clone()
    opt.zero_grad()
    x = torch.ones(2, 6, dtype=torch.float64)
    if herd.rank() == 0:
        model(x).sum().backward()
    else:
        model.fc2(torch.ones(2, 8, dtype=torch.float64)).sum().backward()
    opt.step()
    # rank 0's fc1 gradient, averaged with the other ranks' zeros
    ref = Net()
    ref(x).sum().backward()
    exp = w0 - ref.fc1.weight.grad / herd.size()
    assert torch.allclose(model.fc1.weight, exp, rtol=0, atol=1e-12)


def test_synchronize_then_skip_synchronize():
    model = Net()
    opt = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                                   named_parameters=[(f"s{next(_seq)}.{n}", p)
                                                     for n, p in model.named_parameters()])
    x, y = data(torch.float64)
    n, r = herd.size(), herd.rank()
    per = GLOBAL_BATCH // n
    for s in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[s, r * per:(r + 1) * per]),
                                          y[s, r * per:(r + 1) * per]).backward()
        opt.synchronize()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
        with opt.skip_synchronize():
            opt.step()
    assert_same(model, reference("sgd", torch.float64), 1e-12)


def test_zero_grad_between_backward_and_step_raises():
    model = Net()
    opt = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                                   named_parameters=[(f"z{next(_seq)}.{n}", p)
                                                     for n, p in model.named_parameters()])
    model(torch.ones(1, 6, dtype=torch.float64)).sum().backward()
    with pytest.raises(AssertionError, match="zero_grad"):
        opt.zero_grad()
    opt.step()


def test_mismatched_parameter_shapes_name_the_parameter():
    model = Net()
    if herd.rank() == 1:
        model.fc2.weight = torch.nn.Parameter(torch.zeros(4, 6, dtype=torch.float64))
    named = [(f"m{next(_seq)}.{n}", p) for n, p in model.named_parameters()]
    opt = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                                   named_parameters=named, gradient_as_bucket_view=False)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    if herd.size() > 1:
        with pytest.raises(herd.MismatchError, match=r"fc2\.weight"):
            opt.step()
    else:
        opt.step()


def test_broadcast_parameters_and_optimizer_state():
    root = herd.size() - 1
    torch.manual_seed(100 + herd.rank())  # different everywhere
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5),
                                torch.nn.Linear(5, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.001 * (herd.rank() + 1))
    steps = 1 + herd.rank()  # different state on every rank
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
    hvd.broadcast_parameters(model.state_dict(), root_rank=root)
    hvd.broadcast_optimizer_state(opt, root_rank=root)
    sd = model.state_dict()
    st = opt.state_dict()
    # Every rank now holds root's: compare with the max and min over ranks.
    for k, v in sd.items():
        v = v.double()
        assert torch.equal(hvd.allreduce(v, op=hvd.Max), v), k
        assert torch.equal(hvd.allreduce(v, op=hvd.Min), v), k
    assert st["param_groups"][0]["lr"] == pytest.approx(0.001 * (root + 1))
    for pid, s in st["state"].items():
        for key, v in s.items():
            v = torch.as_tensor(v).double()
            assert torch.equal(hvd.allreduce(v, op=hvd.Max), v), (pid, key)
            assert torch.equal(hvd.allreduce(v, op=hvd.Min), v), (pid, key)
        assert float(s["step"]) == root + 1


def test_broadcast_optimizer_state_fresh_optimizer_and_scalars():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    if herd.rank() == 0:
        opt.param_groups[0]["lr"] = 0.25
        opt.state[model.weight]["custom"] = 7  # a non-tensor state entry
        opt.state[model.weight]["momentum_buffer"] = torch.full((2, 3), 3.0)
    else:
        opt.state[model.bias]["stale"] = torch.ones(5)  # not on the root: removed
    hvd.broadcast_optimizer_state(opt, root_rank=0)
    assert opt.param_groups[0]["lr"] == 0.25
    assert "stale" not in opt.state[model.bias]
    assert opt.state[model.weight]["custom"] == 7
    assert torch.equal(opt.state[model.weight]["momentum_buffer"], torch.full((2, 3), 3.0))


def test_sync_batch_norm_matches_global_batch():
    torch.manual_seed(3)
    x = torch.randn(GLOBAL_BATCH, 4, 5, dtype=torch.float64)
    w = torch.randn(GLOBAL_BATCH, 4, 5, dtype=torch.float64)
    ref = torch.nn.BatchNorm1d(4).double()
    xr = x.clone().requires_grad_()
    ref_out = ref(xr)
    (ref_out * w).sum().backward()
    n, r = herd.size(), herd.rank()
    per = GLOBAL_BATCH // n
    bn = hvd.SyncBatchNorm(4).double()
    xs = x[r * per:(r + 1) * per].clone().requires_grad_()
    out = bn(xs)
    (out * w[r * per:(r + 1) * per]).sum().backward()
    assert torch.allclose(out, ref_out[r * per:(r + 1) * per].detach(), atol=1e-10)
    assert torch.allclose(xs.grad, xr.grad[r * per:(r + 1) * per], atol=1e-10)
    gw = hvd.allreduce(bn.weight.grad, op=hvd.Sum)
    assert torch.allclose(gw, ref.weight.grad, atol=1e-10)
    assert torch.allclose(bn.running_mean, ref.running_mean, atol=1e-12)
    assert torch.allclose(bn.running_var, ref.running_var, atol=1e-12)


def test_bad_named_parameters_raise_value_error():
    model = Net()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="unique"):
        hvd.DistributedOptimizer(sgd, named_parameters=[("same", p) for p in model.parameters()])
    with pytest.raises(ValueError, match="not named"):
        hvd.DistributedOptimizer(sgd, named_parameters=list(model.named_parameters())[:1])
    with pytest.raises(ValueError, match="op != Average"):
        hvd.DistributedOptimizer(sgd, named_parameters=model.named_parameters(), op=hvd.Sum,
                                 gradient_predivide_factor=2.0)


def test_sync_batch_norm_eval_uses_running_stats():
    bn = hvd.SyncBatchNorm(3).double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    bn.eval()
    x = torch.full((2, 3), 5.0, dtype=torch.float64) + hvd.rank()  # differs per rank: no exchange
    exp = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(bn(x), exp, atol=1e-12)
    with pytest.raises(ValueError, match="2D"):
        bn(torch.zeros(3, dtype=torch.float64))


def test_bucket_size_knob(monkeypatch):
    monkeypatch.setenv("HERD_TORCH_BUCKET_BYTES", "64")  # about one parameter per bucket
    model, opt = distributed("sgd", torch.float64)
    assert len(opt._buckets) == 4  # fc1.weight, fc1.bias, fc2.weight, fc2.bias (> 64 B each)
    assert_same(model, reference("sgd", torch.float64), 1e-12)
    monkeypatch.setenv("HERD_TORCH_BUCKET_BYTES", "lots")
    with pytest.raises(ValueError, match="HERD_TORCH_BUCKET_BYTES"):
        hvd.DistributedOptimizer(torch.optim.SGD(Net().parameters(), lr=0.1))
