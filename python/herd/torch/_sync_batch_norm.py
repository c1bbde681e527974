"""SyncBatchNorm: batch normalization with statistics over the whole global batch.

Forward allreduces (sum, sum of squares, count) per channel in float64, so the mean and variance
are those of every rank's batch together; backward allreduces the two per-channel sums the input
gradient needs. The weight and bias gradients stay local sums, as in torch's SyncBatchNorm: the
DistributedOptimizer averages them like any other gradient. Needs only allreduce.
"""

import torch
import torch.nn.functional as F

from . import _ops


class _SyncBatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, training):
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        xd = x.detach().double()
        local = torch.cat([xd.sum(dims), (xd * xd).sum(dims),
                           torch.tensor([x.numel() // max(c, 1)], dtype=torch.float64,
                                        device=x.device)])
        tot = _ops.allreduce_async_(local, op=_ops.Sum).wait()
        n = tot[-1]
        mean = tot[:c] / n
        var = (tot[c:2 * c] / n - mean * mean).clamp_(min=0)
        if running_mean is not None and training:
            unbiased = var * (n / (n - 1)) if n > 1 else var
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        invstd = torch.rsqrt(var + eps)
        shape = [1, c] + [1] * (x.dim() - 2)
        xhat = (xd - mean.view(shape)) * invstd.view(shape)
        y = xhat
        if weight is not None:
            y = y * weight.double().view(shape) + bias.double().view(shape)
        ctx.save_for_backward(xhat.to(x.dtype), weight, invstd, n.reshape(1))
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        xhat, weight, invstd, n = ctx.saved_tensors
        c = xhat.shape[1]
        dims = [0] + list(range(2, xhat.dim()))
        shape = [1, c] + [1] * (xhat.dim() - 2)
        g = grad_out.double()
        xh = xhat.double()
        local = torch.cat([g.sum(dims), (g * xh).sum(dims)])
        grad_weight = local[c:].to(grad_out.dtype) if weight is not None else None
        grad_bias = local[:c].to(grad_out.dtype) if weight is not None else None
        tot = _ops.allreduce_async_(local.clone(), op=_ops.Sum).wait()
        mean_dy = (tot[:c] / n).view(shape)
        mean_dy_xhat = (tot[c:] / n).view(shape)
        w = weight.double().view(shape) if weight is not None else 1.0
        grad_in = (g - mean_dy - xh * mean_dy_xhat) * (invstd.view(shape) * w)
        return (grad_in.to(grad_out.dtype), grad_weight, grad_bias, None, None, None, None,
                None)


class SyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """torch.nn.BatchNorm*d over the global batch: in training, the mean and variance are those
    of every rank's input together (every rank must call forward and backward alike). Input
    (N, C, *) of float dtype on the CPU or a CUDA device; in eval mode it is plain BatchNorm with
    the running statistics (equal on every rank, since each rank updates them from the same
    global statistics). Raises ValueError for input with fewer than 2 dims."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input):
        self._check_input_dim(input)
        if not self.training and self.track_running_stats:
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight,
                                self.bias, False, 0.0, self.eps)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return _SyncBatchNormFunction.apply(
            input, self.weight, self.bias,
            self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.eps, momentum, self.training)
