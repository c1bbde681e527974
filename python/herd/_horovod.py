"""What herd.torch and herd.tensorflow share of Horovod's API, framework-neutral: the ReduceOp
values and their checks, the one process set, the build queries and the compressor interface.
Each framework layer re-exports these names; nothing here imports a framework."""

from . import _capi, _core, errors

# Horovod's ReduceOp values (horovod.common.basics): scripts use the names, some the numbers.
Average = 0
Sum = 1
Adasum = 2
Min = 3
Max = 4
Product = 5

_HERD_OP = {
    Average: _capi.AVERAGE,
    Sum: _capi.SUM,
    Min: _capi.MIN,
    Max: _capi.MAX,
    Product: _capi.PRODUCT,
}


def _op_of(op, average, default=Average):
    """Horovod's handle_average_backwards_compatibility: `average` is the deprecated spelling."""
    if op is not None and average is not None:
        raise ValueError("The op parameter supersedes average. Please provide only one of them.")
    if average is not None:
        return Average if average else Sum
    return default if op is None else op


def _herd_op(op, what):
    code = _HERD_OP.get(op)
    if code is None:
        if op == Adasum:
            raise errors.make(_capi.ERR_NOT_SUPPORTED, f"{what}: herd does not implement Adasum")
        raise errors.invalid_argument(f"{what}: unknown op {op!r}; use hvd.Average, hvd.Sum, "
                                      "hvd.Min, hvd.Max or hvd.Product")
    return code


class _GlobalProcessSet:
    """Horovod's global_process_set: herd has one process set, all ranks."""

    process_set_id = 0

    def included(self):
        return True

    def size(self):
        return _core.size()

    def rank(self):
        return _core.rank()

    def __repr__(self):
        return "ProcessSet(global)"


global_process_set = _GlobalProcessSet()


def mpi_threads_supported():
    """True: herd's MPI runs with MPI_THREAD_MULTIPLE."""
    return True


def mpi_enabled():
    return True


def mpi_built():
    return True


def gloo_enabled():
    return False


def gloo_built():
    return False


def nccl_built():
    return 0


class Compressor:
    """Interface: compress(tensor) -> (tensor, ctx) before the allreduce, decompress(tensor,
    ctx) -> tensor after it."""

    @staticmethod
    def compress(tensor):
        raise NotImplementedError

    @staticmethod
    def decompress(tensor, ctx):
        raise NotImplementedError


class NoneCompressor(Compressor):
    """Sends tensors as they are."""

    @staticmethod
    def compress(tensor):
        return tensor, None

    @staticmethod
    def decompress(tensor, ctx):
        return tensor
