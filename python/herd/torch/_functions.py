"""Differentiable allreduce, allgather and broadcast, with Horovod's backward rules.

    allreduce:  grad_in = allreduce(grad_out) with the forward's op and scale factors
    allgather:  grad_in = this rank's rows of allreduce(grad_out, Average)
    broadcast:  grad_in = allreduce(grad_out, Average) on the root, zeros elsewhere

Every rank must run backward through these ops (they are collectives).
"""

import torch

from . import _ops


class HorovodAllreduce(torch.autograd.Function):
    """allreduce as an autograd Function (what hvd.allreduce applies)."""

    @staticmethod
    def forward(ctx, tensor, name, op, prescale_factor, postscale_factor, process_set):
        ctx.op = op
        ctx.prescale_factor = prescale_factor
        ctx.postscale_factor = postscale_factor
        ctx.process_set = process_set
        return _ops.allreduce_async(tensor, name=name, op=op, prescale_factor=prescale_factor,
                                    postscale_factor=postscale_factor,
                                    process_set=process_set).wait()

    @staticmethod
    def backward(ctx, grad_output):
        grad = _ops.allreduce_async(grad_output, op=ctx.op, prescale_factor=ctx.prescale_factor,
                                    postscale_factor=ctx.postscale_factor,
                                    process_set=ctx.process_set).wait()
        return grad, None, None, None, None, None


class HorovodAllgather(torch.autograd.Function):
    """allgather as an autograd Function (what hvd.allgather applies)."""

    @staticmethod
    def forward(ctx, tensor, name, process_set):
        ctx.dim = tensor.shape[0] if tensor.dim() else 1
        ctx.process_set = process_set
        return _ops.allgather_async(tensor, name=name, process_set=process_set).wait()

    @staticmethod
    def backward(ctx, grad_output):
        grad = _ops.allreduce_async(grad_output, op=_ops.Average,
                                    process_set=ctx.process_set).wait()
        dims = _ops.allgather_async(torch.tensor([ctx.dim], dtype=torch.int64),
                                    process_set=ctx.process_set).wait()
        r = _ops.herd.rank()
        offset = int(dims[:r].sum()) if r else 0
        return grad.narrow(0, offset, ctx.dim), None, None


class HorovodBroadcast(torch.autograd.Function):
    """broadcast as an autograd Function (what hvd.broadcast applies)."""

    @staticmethod
    def forward(ctx, tensor, root_rank, name, process_set):
        ctx.root_rank = root_rank
        ctx.process_set = process_set
        return _ops.broadcast_async(tensor, root_rank, name=name,
                                    process_set=process_set).wait()

    @staticmethod
    def backward(ctx, grad_output):
        grad = _ops.allreduce_async(grad_output, op=_ops.Average,
                                    process_set=ctx.process_set).wait()
        if _ops.herd.rank() != ctx.root_rank:
            grad = grad * 0
        return grad, None, None, None
