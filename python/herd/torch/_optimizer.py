"""DistributedOptimizer and the state broadcasts (horovod.torch's optimizer layer).

Each gradient is submitted the moment autograd has finished accumulating it
(Tensor.register_post_accumulate_grad_hook), so the exchange overlaps the rest of backward;
step() waits only for what is still in flight. Parameters are declared to herd in registration
order (herd.declare), which for a model built in forward order means early layers' gradients,
ready last in backward, are reduced first once several are ready: the next forward needs them
first.

Gradient buckets (gradient_as_bucket_view, herd's addition, like DDP's option of that name):
every gradient becomes a view of one of a few flat buffers laid out in registration order, so
a bucket whose gradients are all accumulated is reduced where it lies with one herd call, no
copy in or out. On by default where it is safe: no compression, no groups, dense contiguous
parameters. zero_grad() then zeroes the buffers instead of setting the gradients to None.
"""

import os
import warnings
from collections import defaultdict

import torch

import herd
from herd import _capi, errors

from . import _ops
from ._objects import broadcast_object
from .compression import Compression

# Bytes of gradients per bucket (gradient_as_bucket_view); herd moves host memory in 1 MiB pieces
# anyway, so a bucket this size costs one call and never waits long for its last gradient.
# HERD_TORCH_BUCKET_BYTES overrides it (read when a DistributedOptimizer is made).
BUCKET_BYTES = 4 << 20


def _bucket_bytes():
    raw = os.environ.get("HERD_TORCH_BUCKET_BYTES")
    if raw is None:
        return BUCKET_BYTES
    try:
        v = int(raw)
    except ValueError:
        v = -1
    if v <= 0:
        raise ValueError(f"HERD_TORCH_BUCKET_BYTES={raw!r}: expected a positive number of bytes")
    return v


class _Bucket:
    __slots__ = ("index", "params", "flat", "pending", "handle", "name")

    def __init__(self, index, params, flat, first, last):
        self.index = index
        self.params = params
        self.flat = flat
        self.pending = len(params)
        self.handle = None
        # Named by its parameters, so two optimizers' buckets never share a name.
        self.name = f"bucket[{first}..{last}]"


class _DistributedOptimizer(torch.optim.Optimizer):
    def __init__(self, params, named_parameters, compression, backward_passes_per_step=1,
                 op=_ops.Average, gradient_predivide_factor=1.0, groups=None,
                 sparse_as_dense=False, gradient_as_bucket_view=None, defaults=None):
        try:
            super(self.__class__, self).__init__(params, **(defaults or {}))
        except TypeError:
            super(self.__class__, self).__init__(params)
        self._compression = compression
        self.backward_passes_per_step = backward_passes_per_step
        self.op = op
        self.gradient_predivide_factor = gradient_predivide_factor
        self.sparse_as_dense = sparse_as_dense
        self.process_set = _ops.global_process_set

        all_params = [p for g in self.param_groups for p in g["params"]]
        if named_parameters is not None:
            named_parameters = list(named_parameters)
        else:
            named_parameters = [(f"noname.{i}", p) for i, p in enumerate(all_params)]
        if any(not isinstance(p, tuple) for p in named_parameters):
            raise ValueError("named_parameters should be a sequence of tuples (name, parameter), "
                             "usually produced by model.named_parameters().")
        dups = _duplicates([k for k, _ in named_parameters])
        if dups:
            raise ValueError("Parameter names in named_parameters must be unique. Found "
                             f"duplicates: {', '.join(dups)}")
        named_ids = {id(v) for _, v in named_parameters}
        unnamed = [p for p in all_params if id(p) not in named_ids]
        if unnamed:
            raise ValueError("named_parameters was specified, but one or more model parameters "
                             "were not named. Python object ids: "
                             f"{', '.join(str(id(p)) for p in unnamed)}")
        if op != _ops.Average and gradient_predivide_factor != 1.0:
            raise ValueError("gradient_predivide_factor not supported with op != Average")
        if op == _ops.Adasum:
            raise errors.make(_capi.ERR_NOT_SUPPORTED, "herd does not implement Adasum")

        # Registration order of the optimizer's parameters; names from named_parameters.
        name_of = {id(v): k for k, v in named_parameters}
        self._order = [p for p in all_params]
        self._parameter_names = {p: name_of[id(p)] for p in self._order}
        self._requires_update = [p for p in self._order if p.requires_grad]

        self._p_to_group = {}
        self._group_counts = {}
        if groups is not None:
            if isinstance(groups, int):
                if groups <= 0:
                    raise ValueError("groups must be a positive int or a list of lists")
                n = len(self._requires_update)
                per = -(-n // groups) if n else 1
                groups = [self._requires_update[i:i + per] for i in range(0, n, per)]
            elif not (isinstance(groups, list) and all(isinstance(g, list) for g in groups)):
                raise ValueError("groups should be a non-negative integer or a list of lists of "
                                 "torch.Tensor.")
            for gi, g in enumerate(groups):
                members = tuple(g)
                for p in members:
                    self._p_to_group[p] = members
                self._group_counts[members] = 0
        self._groups = groups

        if gradient_as_bucket_view is None:
            gradient_as_bucket_view = (compression is Compression.none and groups is None
                                       and not sparse_as_dense and all(
                                           p.is_contiguous() and not p.is_sparse
                                           for p in self._requires_update))
        self._buckets = []
        self._p_bucket = {}
        self._bucket_shape_checked = set()
        self._bucket_checks = []
        if gradient_as_bucket_view:
            self._make_buckets()
        else:
            for p in self._requires_update:  # registration order is herd's priority order
                herd.declare(f"allreduce.{self._parameter_names[p]}")

        self._handles = {}
        self._grad_accs = []
        self._hook_handles = []
        self._requires_update_set = set(self._requires_update)
        self._synchronized = False
        self._should_synchronize = True
        self._allreduce_delay = {p: backward_passes_per_step for p in self._requires_update}
        self._register_hooks()

    # -- setup -------------------------------------------------------------------------------

    def _make_buckets(self):
        cap = _bucket_bytes()
        runs = defaultdict(list)  # (dtype, device) -> params in order
        for p in self._requires_update:
            runs[(p.dtype, p.device)].append(p)
        for (dtype, device), ps in runs.items():
            start = 0
            while start < len(ps):
                size, end = 0, start
                while end < len(ps) and (end == start or
                                         size + ps[end].numel() * ps[end].element_size()
                                         <= cap):
                    size += ps[end].numel() * ps[end].element_size()
                    end += 1
                members = ps[start:end]
                flat = torch.zeros(sum(p.numel() for p in members), dtype=dtype, device=device)
                b = _Bucket(len(self._buckets), members, flat,
                            self._parameter_names[members[0]],
                            self._parameter_names[members[-1]])
                off = 0
                for p in members:
                    view = flat[off:off + p.numel()].view_as(p)
                    if p.grad is not None:
                        view.copy_(p.grad)
                    p.grad = view
                    self._p_bucket[p] = (b, view)
                    off += p.numel()
                self._buckets.append(b)
                start = end
        for b in self._buckets:
            herd.declare(f"allreduce.{b.name}")

    def _register_hooks(self):
        for p in self._requires_update:
            if hasattr(p, "register_post_accumulate_grad_hook"):
                self._hook_handles.append(p.register_post_accumulate_grad_hook(self._make_hook()))
            else:  # torch < 2.1: the gradient accumulator's hook, as Horovod does
                p_tmp = p.expand_as(p)
                grad_acc = p_tmp.grad_fn.next_functions[0][0]
                grad_acc.register_hook(lambda *_, p=p: self._make_hook()(p))
                self._grad_accs.append(grad_acc)

    def _make_hook(self):
        def hook(p):
            if p in self._handles and self._handles[p][0] is not None:
                if self._allreduce_delay[p] <= 0:
                    raise AssertionError(
                        "Gradients were computed more than backward_passes_per_step times "
                        "before call to step(). Increase backward_passes_per_step to "
                        "accumulate gradients locally.")
            assert not p.grad.requires_grad
            assert self._allreduce_delay[p] > 0
            handle, ctx = None, None
            self._allreduce_delay[p] -= 1
            if self._allreduce_delay[p] == 0:
                if self._buckets:
                    self._bucket_ready(p)
                elif self._groups is not None:
                    group = self._p_to_group[p]
                    self._group_counts[group] += 1
                    if self._group_counts[group] == len(group):
                        handle, ctx = self._grouped_allreduce_grad_async(group)
                        self._handles[group] = (handle, ctx)
                        for gp in group:
                            self._handles.pop(gp, None)
                        self._group_counts[group] = 0
                        return
                else:
                    handle, ctx = self._allreduce_grad_async(p)
            self._handles[p] = (handle, ctx)
        return hook

    # -- submission --------------------------------------------------------------------------

    def _scale_factors(self):
        if self.op == _ops.Average:
            # herd divides by size() for Average on top of these, as Horovod's core does.
            return 1.0 / self.gradient_predivide_factor, self.gradient_predivide_factor
        return 1.0, 1.0

    def _grad_of(self, p):
        if p.grad is None:
            p.grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
        if p.grad.is_sparse:
            if not self.sparse_as_dense:
                raise errors.make(
                    _capi.ERR_NOT_SUPPORTED,
                    f"parameter '{self._parameter_names[p]}' has a sparse gradient; herd "
                    "reduces dense tensors: pass sparse_as_dense=True")
            p.grad = p.grad.to_dense()
        if not p.grad.is_contiguous():
            p.grad = p.grad.contiguous()
        return p.grad

    def _allreduce_grad_async(self, p):
        name = self._parameter_names[p]
        tensor = self._grad_of(p)
        compressed, ctx = self._compression.compress(tensor)
        pre, post = self._scale_factors()
        handle = _ops.allreduce_async_(compressed, name=name, op=self.op, prescale_factor=pre,
                                       postscale_factor=post)
        return handle, ctx

    def _grouped_allreduce_grad_async(self, group):
        pre, post = self._scale_factors()
        handles, ctxs = [], []
        for p in group:
            compressed, ctx = self._compression.compress(self._grad_of(p))
            handles.append(_ops.allreduce_async_(
                compressed, name=self._parameter_names[p], op=self.op, prescale_factor=pre,
                postscale_factor=post))
            ctxs.append(ctx)
        return handles, ctxs

    def _bucket_view(self, p):
        b, view = self._p_bucket[p]
        if p.grad is None:
            view.zero_()
            p.grad = view
        elif p.grad.data_ptr() != view.data_ptr():
            # Someone replaced the gradient (e.g. set it to None and autograd made a new one):
            # one copy back into the bucket, and the view is the gradient again.
            view.copy_(p.grad)
            p.grad = view
        return b

    def _bucket_ready(self, p):
        b = self._bucket_view(p)
        b.pending -= 1
        if b.pending == 0:
            self._submit_bucket(b)

    def _submit_bucket(self, b):
        pre, post = self._scale_factors()
        try:
            b.handle = _ops.allreduce_async_(b.flat, name=b.name, op=self.op,
                                             prescale_factor=pre, postscale_factor=post)
        except errors.HerdError as e:
            raise self._bucket_error(b, e) from None
        if b.index not in self._bucket_shape_checked:
            # The bucket's count is checked by herd; also compare each parameter's shape once.
            self._bucket_shape_checked.add(b.index)
            for p in b.params:
                b_name = f"{b.name}:{self._parameter_names[p]}"
                self._bucket_checks.append(_ops._ShapeCheck(p.shape, b_name.encode(), b_name))

    def _bucket_error(self, b, e):
        names = ", ".join(self._parameter_names[p] for p in b.params)
        return type(e)(e.status, e.name, f"{e.message} (gradient bucket {b.index} holds the "
                                         f"parameters {names})")

    # -- the optimizer protocol --------------------------------------------------------------

    def synchronize(self):
        """Waits for every gradient's allreduce (submitting those whose hooks did not fire: a
        parameter unused this step gets a zero gradient, so no rank waits for it forever).
        After it, each p.grad holds the reduced gradient. Raises the HerdError of a failed
        exchange; its message names the parameter."""
        if self._buckets:
            return self._synchronize_buckets()
        completed = set()
        for x in self._handles:
            completed.update(x) if isinstance(x, tuple) else completed.add(x)
        for p in self._requires_update:
            if p not in completed:
                if self._groups is not None:
                    group = self._p_to_group[p]
                    if group not in self._handles:
                        self._handles[group] = self._grouped_allreduce_grad_async(group)
                        for gp in group:
                            self._handles.pop(gp, None)
                            completed.add(gp)
                        self._group_counts[group] = 0
                else:
                    self._handles[p] = self._allreduce_grad_async(p)
        for p, (handle, ctx) in list(self._handles.items()):
            if handle is None:
                self._handles[p] = self._allreduce_grad_async(p)
        first = None
        for key, (handle, ctx) in self._handles.items():
            ps = key if isinstance(key, tuple) else (key,)
            hs = handle if isinstance(handle, list) else [handle]
            cs = ctx if isinstance(handle, list) else [ctx]
            for p, h, c in zip(ps, hs, cs):
                try:
                    output = h.wait()
                except errors.HerdError as e:
                    first = first or e
                    continue
                self._allreduce_delay[p] = self.backward_passes_per_step
                out = self._compression.decompress(output, c)
                if out.data_ptr() != p.grad.data_ptr():
                    p.grad.copy_(out)
        self._handles.clear()
        self._synchronized = True
        if first is not None:
            raise first

    def _synchronize_buckets(self):
        for b in self._buckets:
            if b.handle is None:
                for p in b.params:
                    self._bucket_view(p)
                self._submit_bucket(b)
        first = None
        for b in self._buckets:
            try:
                b.handle.wait()
            except errors.HerdError as e:
                first = first or self._bucket_error(b, e)
            b.handle = None
            b.pending = len(b.params)
        checks, self._bucket_checks[:] = list(self._bucket_checks), []
        for c in checks:
            try:
                c.finish()
            except errors.HerdError as e:
                first = e if first is None or isinstance(e, errors.MismatchError) else first
        for p in self._requires_update:
            self._allreduce_delay[p] = self.backward_passes_per_step
        self._handles.clear()
        self._synchronized = True
        if first is not None:
            raise first

    def skip_synchronize(self):
        """A context manager: step() inside it does not synchronize, for use after an explicit
        synchronize() (e.g. to clip gradients between the two)."""
        return _SkipSynchronize(self)

    def step(self, closure=None):
        """Synchronizes (unless inside skip_synchronize()) and runs the wrapped optimizer's
        step."""
        if self._should_synchronize:
            if self._synchronized:
                warnings.warn("optimizer.step() called without optimizer.skip_synchronize() "
                              "context after optimizer.synchronize(). This can cause training "
                              "slowdown. You may want to consider using "
                              "optimizer.skip_synchronize() context if you use "
                              "optimizer.synchronize() in your code.")
            self.synchronize()
        self._synchronized = False
        return super(self.__class__, self).step(closure)

    def zero_grad(self, set_to_none=True):
        """As the wrapped optimizer's; with gradient buckets the gradients are zeroed in place
        (they stay views of the buckets). Raises AssertionError between backward and step."""
        if self._handles or any(b.handle is not None for b in self._buckets):
            raise AssertionError("optimizer.zero_grad() was called after loss.backward() but "
                                 "before optimizer.step() or optimizer.synchronize(). This is "
                                 "prohibited as it can cause a race condition.")
        if self._buckets:
            for b in self._buckets:
                b.flat.zero_()
                for p in b.params:
                    self._bucket_view(p)
            others = [p for g in self.param_groups for p in g["params"]
                      if p not in self._p_bucket and p.grad is not None]
            for p in others:
                p.grad = None if set_to_none else p.grad.zero_()
            return None
        return super(self.__class__, self).zero_grad(set_to_none)


class _SkipSynchronize:
    def __init__(self, opt):
        self.opt = opt

    def __enter__(self):
        self.opt._should_synchronize = False

    def __exit__(self, *exc):
        self.opt._should_synchronize = True
        return False


def _duplicates(names):
    seen, dups = set(), []
    for n in names:
        if n in seen and n not in dups:
            dups.append(n)
        seen.add(n)
    return dups


def DistributedOptimizer(optimizer, named_parameters=None, compression=Compression.none,
                         backward_passes_per_step=1, op=_ops.Average,
                         gradient_predivide_factor=1.0, groups=None, sparse_as_dense=False,
                         process_set=_ops.global_process_set, gradient_as_bucket_view=None):
    """Wraps a torch optimizer so that step() applies gradients averaged over all ranks.

    optimizer: any torch.optim.Optimizer; the result is an instance of its class (a subclass
        made on the fly, as Horovod does) over the same param_groups, with its state copied.
    named_parameters: model.named_parameters(); the names name herd's tensors, so they must be
        the same on every rank. Without it, parameters are named by their position.
    compression: Compression.none or Compression.fp16 (floating gradients sent as float16).
    backward_passes_per_step: backward passes accumulated locally before the exchange.
    op: Average (default), Sum, Min, Max, Product (Adasum raises NotSupportedError).
    gradient_predivide_factor: Average only: gradients are divided by this before the sum and
        by size()/factor after it.
    groups: None, an int (that many groups of consecutive parameters) or a list of lists of
        parameters; a group's gradients are submitted together once all are ready.
    sparse_as_dense: turn sparse gradients dense before reducing (herd reduces dense tensors).
    gradient_as_bucket_view: herd's addition (see the module doc); None: on where safe.

    Raises ValueError for bad names or options. Errors of the exchange surface from step() or
    synchronize() as HerdError naming the parameter.
    """
    _ops._check_process_set(process_set)
    cls = type(optimizer.__class__.__name__, (optimizer.__class__,),
               dict(_DistributedOptimizer.__dict__))
    opt = cls(optimizer.param_groups, named_parameters, compression, backward_passes_per_step,
              op, gradient_predivide_factor, groups, sparse_as_dense, gradient_as_bucket_view,
              dict(optimizer.defaults))
    if optimizer.state:
        opt.load_state_dict(optimizer.state_dict())
    return opt


def broadcast_parameters(params, root_rank, prefix=None):
    """Copies root_rank's parameters into every rank's, in place.

    params: model.state_dict(), model.named_parameters() or a list of (name, tensor) pairs or
        tensors; the same names, shapes and dtypes on every rank. Raises ValueError for another
        type, HerdError (naming the tensor) when ranks disagree.
    """
    if isinstance(params, dict):
        params = sorted(params.items())
    elif isinstance(params, list):
        params = [p if isinstance(p, tuple) else (None, p) for p in params]
    elif hasattr(params, "__iter__"):
        params = list(params)
    else:
        raise ValueError(f"invalid params of type: {type(params)}")
    handles = []
    for name, p in params:
        if prefix is not None and name is not None:
            name = prefix + name
        with torch.no_grad():
            handles.append(_ops.broadcast_async_(p.data if isinstance(p, torch.nn.Parameter)
                                                 else p, root_rank, name))
    first = None
    for h in handles:
        try:
            h.wait()
        except errors.HerdError as e:
            first = first or e
    if first is not None:
        raise first


def broadcast_optimizer_state(optimizer, root_rank, prefix="Parameter.", model=None):
    """Makes every rank's optimizer state equal root_rank's: state tensors (momentum buffers,
    Adam moments and steps) by broadcast, in place where a rank already has a tensor of the
    root's shape and dtype; non-tensor state entries and the param_groups' options (lr,
    betas...) by value. Ranks whose optimizer has not stepped yet (no state) get the root's
    entries, so a rank 0 that resumed from a checkpoint brings the others along. Every rank
    must hold the same parameters in the same groups (ValueError otherwise). Raises HerdError
    when ranks disagree on root_rank.
    """
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ValueError("cannot broadcast torch.optim.LBFGS state")
    root = herd.rank() == root_rank
    meta = None
    if root:
        meta = {"groups": [], "scalars": {}, "tensors": [],
                "counts": [len(g["params"]) for g in optimizer.param_groups]}
        for gi, group in enumerate(optimizer.param_groups):
            meta["groups"].append({k: v for k, v in group.items() if k != "params"})
            for pi, p in enumerate(group["params"]):
                for key in sorted(optimizer.state.get(p, {}), key=str):
                    v = optimizer.state[p][key]
                    if torch.is_tensor(v):
                        on_param = v.device == p.device
                        meta["tensors"].append((gi, pi, key, tuple(v.shape), v.dtype, on_param))
                    else:
                        meta["scalars"][(gi, pi, key)] = v
    meta = broadcast_object(meta, root_rank)
    counts = [len(g["params"]) for g in optimizer.param_groups]
    if counts != meta["counts"]:
        raise ValueError(f"rank {herd.rank()}'s optimizer has param groups of {counts} "
                         f"parameters, root rank {root_rank}'s has {meta['counts']}")
    tensors = []
    keep = defaultdict(set)
    for gi, pi, key, shape, dtype, on_param in meta["tensors"]:
        p = optimizer.param_groups[gi]["params"][pi]
        state = optimizer.state[p]
        v = state.get(key)
        device = p.device if on_param else torch.device("cpu")
        if not (torch.is_tensor(v) and tuple(v.shape) == shape and v.dtype == dtype
                and v.device == device and v.is_contiguous()):
            v = state[key] = torch.zeros(shape, dtype=dtype, device=device)
        keep[p].add(key)
        tensors.append((f"{prefix}optimizer_state.{gi}.{pi}.{key}", v))
    for (gi, pi, key), v in meta["scalars"].items():
        p = optimizer.param_groups[gi]["params"][pi]
        optimizer.state[p][key] = v
        keep[p].add(key)
    if not root:
        for gi, group in enumerate(optimizer.param_groups):
            group.update(meta["groups"][gi])
            for p in group["params"]:
                for key in [k for k in optimizer.state.get(p, {}) if k not in keep[p]]:
                    del optimizer.state[p][key]
    broadcast_parameters(tensors, root_rank)
