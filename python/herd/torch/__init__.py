"""herd.torch: horovod.torch's API on herd, so `import herd.torch as hvd` runs Horovod scripts.

    import torch
    import herd.torch as hvd

    hvd.init()
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01 * hvd.size(), momentum=0.9)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    for x, y in loader:                      # each rank its own shard
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()   # exchange overlaps backward
        optimizer.step()                     # waits for what is still in flight

Built on herd's ctypes package: tensors reach libherd as data_ptr() pointers, so nothing is
compiled against torch and any torch release works. torch is imported when this submodule is,
never by `import herd`. CPU and CUDA tensors (CUDA: the current stream produces and consumes).

allgather, alltoall, reducescatter, barrier, join and allgather_object use herd's collectives of
issue 9 (herd.allgather...) and raise NotSupportedError in a herd without them.
"""

try:
    import torch  # noqa: F401
except ModuleNotFoundError as e:
    if e.name != "torch":
        raise
    raise ImportError("herd.torch needs PyTorch, which is not installed in this Python; "
                      "install it with `python3 -m pip install torch`") from None
except ImportError as e:
    # torch is there but failed to load: typically a libherd built against the system's CUDA
    # and NCCL, loaded RTLD_GLOBAL before torch, whose own libraries then miss symbols.
    raise ImportError(
        f"herd.torch: PyTorch is installed but failed to load ({e}). If libherd links CUDA or "
        "NCCL itself, import torch before herd, or use a libherd built with "
        "-DHERD_WITH_CUDA=OFF") from e

import herd as _herd
from herd import (  # noqa: F401 - re-exported, as horovod.torch does
    HerdError,
    HerdTimeoutError,
    InvalidArgumentError,
    MismatchError,
    NotSupportedError,
    ShutdownError,
    init,
    is_initialized,
    local_rank,
    local_size,
    rank,
    shutdown,
    size,
)

from herd._horovod import (  # noqa: F401 - Horovod's build queries
    gloo_built, gloo_enabled, mpi_built, mpi_enabled, mpi_threads_supported, nccl_built)

from . import _ops
from ._functions import HorovodAllgather, HorovodAllreduce, HorovodBroadcast
from ._objects import allgather_object, broadcast_object
from ._ops import (  # noqa: F401
    Adasum,
    Average,
    Handle,
    Max,
    Min,
    Product,
    Sum,
    allgather_async,
    allreduce_,
    allreduce_async,
    allreduce_async_,
    alltoall,
    alltoall_async,
    barrier,
    broadcast_,
    broadcast_async,
    broadcast_async_,
    global_process_set,
    grouped_allreduce_,
    grouped_allreduce_async,
    grouped_allreduce_async_,
    join,
    poll,
    reducescatter,
    reducescatter_async,
    synchronize,
)
from ._optimizer import (  # noqa: F401
    DistributedOptimizer,
    broadcast_optimizer_state,
    broadcast_parameters,
)
from ._sync_batch_norm import SyncBatchNorm
from .compression import Compression

allgather = _ops.allgather


def allreduce(tensor, average=None, name=None, compression=Compression.none, op=None,
              prescale_factor=1.0, postscale_factor=1.0, process_set=global_process_set):
    """Allreduce of `tensor` over all ranks into a new tensor; differentiable (the gradient is
    the same allreduce of the output's gradient).

    tensor: any shape (0-d and empty too), dtype uint8/int8/int32/int64/float16/bfloat16/
        float32/float64, CPU or CUDA; the same shape and dtype on every rank.
    op: Average (default), Sum, Min, Max, Product; `average` is Horovod's deprecated flag.
    compression: Compression.none or Compression.fp16 (floats travel as float16).
    prescale_factor / postscale_factor: multiply the input before / the result after.
    Returns a tensor of `tensor`'s shape and dtype, the same on every rank. Raises
    InvalidArgumentError (dtype, op), MismatchError (ranks disagree on shape or dtype).
    """
    op = _ops._op_of(op, average)
    compressed, ctx = compression.compress(tensor)
    out = HorovodAllreduce.apply(compressed, name, op, prescale_factor, postscale_factor,
                                 process_set)
    return compression.decompress(out, ctx)


def grouped_allreduce(tensors, average=None, name=None, compression=Compression.none, op=None,
                      prescale_factor=1.0, postscale_factor=1.0, process_set=global_process_set):
    """Allreduce of every tensor of the list, submitted together; returns the list of results
    (new tensors). Differentiable like allreduce. See allreduce for the arguments."""
    op = _ops._op_of(op, average)

    def member(i):
        return None if name is None else f"{name}.{i}"

    outs = []
    pairs = [compression.compress(t) for t in tensors]
    # Submit every member before waiting on any: herd reduces them as they become ready.
    handles = [_ops.allreduce_async(c, name=member(i), op=op, prescale_factor=prescale_factor,
                                    postscale_factor=postscale_factor, process_set=process_set)
               if not c.requires_grad else None
               for i, (c, _) in enumerate(pairs)]
    for i, ((c, ctx), h) in enumerate(zip(pairs, handles)):
        if h is None:
            out = HorovodAllreduce.apply(c, member(i), op, prescale_factor, postscale_factor,
                                         process_set)
        else:
            out = h.wait()
        outs.append(compression.decompress(out, ctx))
    return outs


def broadcast(tensor, root_rank, name=None, process_set=global_process_set):
    """root_rank's `tensor` as a new tensor on every rank; differentiable (the gradient reaches
    only the root: the Average allreduce of the output's gradient there, zeros elsewhere).
    `tensor` must have the same shape and dtype on every rank."""
    return HorovodBroadcast.apply(tensor, root_rank, name, process_set)


def cuda_built():
    return _herd.abi_version() >= 1 and torch.cuda.is_available()


__all__ = [
    "init", "shutdown", "is_initialized", "rank", "size", "local_rank", "local_size",
    "allreduce", "allreduce_", "allreduce_async", "allreduce_async_",
    "grouped_allreduce", "grouped_allreduce_", "grouped_allreduce_async",
    "grouped_allreduce_async_", "allgather", "allgather_async", "broadcast", "broadcast_",
    "broadcast_async", "broadcast_async_", "alltoall", "alltoall_async", "reducescatter",
    "reducescatter_async", "poll", "synchronize",
    "barrier", "join", "broadcast_parameters", "broadcast_optimizer_state", "broadcast_object",
    "allgather_object", "DistributedOptimizer", "Compression", "SyncBatchNorm",
    "Average", "Sum", "Adasum", "Min", "Max", "Product", "Handle", "global_process_set",
    "HorovodAllreduce", "HorovodAllgather", "HorovodBroadcast",
]
