"""herd: fused, negotiated collectives over MPI for data-parallel training: push_pull
(allreduce), broadcast, allgather, reducescatter, alltoall, barrier, join, groups, objects.

    import numpy as np
    import herd

    herd.init()                                  # every rank; shutdown also runs at exit
    w = np.random.default_rng(herd.rank()).standard_normal(10).astype(np.float32)
    herd.broadcast(w, root=0, name="w")          # in place: rank 0's values everywhere
    grad = np.ones(10, np.float32)
    avg = herd.push_pull(grad, name="w.grad", op="average")         # a new array
    h = herd.push_pull_async(grad, name="w.grad.sum", out=grad)     # in place, async
    ...                                          # more backward work meanwhile
    h.wait()                                     # grad now holds the sum over the ranks

Importing herd loads libherd with RTLD_GLOBAL (found through $HERD_LIBRARY, a copy installed
beside this package, a checkout's build tree, then the system library path) and checks its ABI
version. Compiled framework ops loaded afterwards may call herd_* directly without linking
libherd: they resolve to this same copy.

Names: every rank must submit a tensor under the same name. Calls without a name get
"push_pull.noname.<N>" / "broadcast.noname.<N>" from per-process counters, which agree across
ranks only when every rank makes its unnamed calls in the same order from one thread; name
tensors explicitly otherwise.

Errors: every failure raises a HerdError subclass (MismatchError, HerdTimeoutError,
ShutdownError, InvalidArgumentError...) carrying .status (also .code), .name and .message.

Blocking calls release the GIL and wait in short slices, so Ctrl-C stops a rank that waits for
its peers.
"""

from . import _capi
from ._capi import (
    ABI_VERSION,
    AVERAGE,
    BFLOAT16,
    DEVICE_CPU,
    ERR_BACKEND,
    ERR_INTERNAL,
    ERR_INVALID_ARG,
    ERR_INVALID_USAGE,
    ERR_MISMATCH,
    ERR_NO_MEMORY,
    ERR_NOT_FOUND,
    ERR_NOT_SUPPORTED,
    ERR_SHUTDOWN,
    ERR_STALLED,
    ERR_TIMEOUT,
    FLOAT16,
    FLOAT32,
    FLOAT64,
    INT8,
    INT32,
    INT64,
    MAX,
    MAX_NAME_LEN,
    MIN,
    PRODUCT,
    SUM,
    UINT8,
)
from ._buffers import DTYPES
from ._build_info import build_info
from ._core import (
    OPS,
    Handle,
    abi_version,
    allgather,
    allgather_async,
    allgather_object,
    alltoall,
    alltoall_async,
    barrier,
    barrier_async,
    broadcast,
    broadcast_async,
    broadcast_object,
    counter_names,
    counters,
    grouped_push_pull,
    grouped_push_pull_async,
    join,
    join_async,
    reducescatter,
    reducescatter_async,
    declare,
    init,
    is_initialized,
    local_rank,
    local_size,
    push_pull,
    push_pull_async,
    rank,
    shutdown,
    size,
    version,
)
from .errors import (
    BackendError,
    HerdError,
    HerdTimeoutError,
    InternalError,
    InvalidArgumentError,
    InvalidUsageError,
    MismatchError,
    NoMemoryError,
    NotFoundError,
    NotSupportedError,
    ShutdownError,
    StalledError,
    status_name,
    strerror,
)

__version__ = "0.2.0"

#: The path of the loaded libherd.
library_path = _capi.path

__all__ = [
    "init", "shutdown", "is_initialized", "rank", "size", "local_rank", "local_size", "declare",
    "push_pull", "push_pull_async", "broadcast", "broadcast_async", "Handle",
    "allgather", "allgather_async", "reducescatter", "reducescatter_async", "alltoall",
    "alltoall_async", "barrier", "barrier_async", "join", "join_async", "grouped_push_pull",
    "grouped_push_pull_async", "broadcast_object", "allgather_object",
    "counters", "counter_names", "version", "abi_version", "library_path", "build_info", "status_name", "strerror",
    "HerdError", "InvalidArgumentError", "InvalidUsageError", "NotFoundError",
    "NotSupportedError", "NoMemoryError", "BackendError", "MismatchError", "HerdTimeoutError",
    "ShutdownError", "InternalError", "StalledError",
    "SUM", "AVERAGE", "MIN", "MAX", "PRODUCT", "OPS", "DTYPES",
    "UINT8", "INT8", "INT32", "INT64", "FLOAT16", "BFLOAT16", "FLOAT32", "FLOAT64",
    "DEVICE_CPU", "MAX_NAME_LEN", "ABI_VERSION",
    "ERR_INVALID_ARG", "ERR_INVALID_USAGE", "ERR_NOT_FOUND", "ERR_NOT_SUPPORTED",
    "ERR_NO_MEMORY", "ERR_BACKEND", "ERR_MISMATCH", "ERR_TIMEOUT", "ERR_SHUTDOWN",
    "ERR_INTERNAL", "ERR_STALLED",
]
