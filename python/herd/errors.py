"""herd's exceptions: one class per negative status of herd.h.

Every error herd reports is a HerdError carrying the C status (``status``, also ``code``), its
name ("HERD_ERR_MISMATCH") and the message herd_last_error() gave, which names the tensor, the
ranks and the values involved. Branch on the subclass, or on ``e.status`` against herd.ERR_*:

    try:
        herd.push_pull(grad, name="fc.weight")
    except herd.MismatchError as e:   # ranks disagreed on count, dtype, op or root
        ...

Mistakes the Python layer catches before calling C (a non-contiguous array, an unknown op name)
raise the same classes with the same status, so code need not care where a check lives.
InvalidArgumentError is also a ValueError.
"""

from . import _capi


class HerdError(RuntimeError):
    """A negative herd status. Attributes: status (== code), name, message."""

    def __init__(self, status, name, message):
        super().__init__(status, name, message)
        self.status = status
        self.name = name
        self.message = message

    @property
    def code(self):
        return self.status

    def __str__(self):
        return f"{self.name}: {self.message}" if self.message else self.name


class InvalidArgumentError(HerdError, ValueError):
    """HERD_ERR_INVALID_ARG: a bad argument (buffer, dtype, op, name, root...)."""


class InvalidUsageError(HerdError):
    """HERD_ERR_INVALID_USAGE: the right call at the wrong time (before init, duplicate name...)."""


class NotFoundError(HerdError):
    """HERD_ERR_NOT_FOUND: an unknown, stale or already-waited handle."""


class NotSupportedError(HerdError):
    """HERD_ERR_NOT_SUPPORTED: e.g. GPU memory in a build without GPU support."""


class NoMemoryError(HerdError):
    """HERD_ERR_NO_MEMORY: an allocation or a fixed table ran out."""


class BackendError(HerdError):
    """HERD_ERR_BACKEND: MPI (or NCCL/CUDA) failed; its own text is in the message."""


class MismatchError(HerdError):
    """HERD_ERR_MISMATCH: ranks disagree about a tensor's count, dtype, op or root."""


class HerdTimeoutError(HerdError):
    """HERD_ERR_TIMEOUT: a wait's own timeout passed; the handle stays valid."""


class StalledError(HerdTimeoutError):
    """HERD_ERR_STALLED: the operation itself timed out because some ranks never submitted it
    (HERD_STALL_TIMEOUT_SECONDS). The message names the tensor and the missing ranks. A
    HerdTimeoutError too, so ``except herd.HerdTimeoutError`` catches both kinds of timeout;
    unlike a wait's own timeout, the handle is released."""


class ShutdownError(HerdError):
    """HERD_ERR_SHUTDOWN: the operation was pending when herd shut down."""


class InternalError(HerdError):
    """HERD_ERR_INTERNAL: a bug in herd; please report it with the message."""


_BY_STATUS = {
    _capi.ERR_INVALID_ARG: InvalidArgumentError,
    _capi.ERR_INVALID_USAGE: InvalidUsageError,
    _capi.ERR_NOT_FOUND: NotFoundError,
    _capi.ERR_NOT_SUPPORTED: NotSupportedError,
    _capi.ERR_NO_MEMORY: NoMemoryError,
    _capi.ERR_BACKEND: BackendError,
    _capi.ERR_MISMATCH: MismatchError,
    _capi.ERR_TIMEOUT: HerdTimeoutError,
    _capi.ERR_SHUTDOWN: ShutdownError,
    _capi.ERR_INTERNAL: InternalError,
    _capi.ERR_STALLED: StalledError,
}


def status_name(status):
    return _capi.text(_capi.lib.herd_status_name(status))


def strerror(status):
    return _capi.text(_capi.lib.herd_strerror(status))


def make(status, message=None):
    """The exception for `status`. Without `message`, herd_last_error() is used, so call this
    right after the failing call, on the same thread, before any other herd call."""
    if message is None:
        message = _capi.text(_capi.lib.herd_last_error()) or strerror(status)
    cls = _BY_STATUS.get(status, HerdError)
    return cls(status, status_name(status), message)


def check(status):
    """Raises for a negative status; returns it otherwise."""
    if status < 0:
        raise make(status)
    return status


def invalid_argument(message):
    return make(_capi.ERR_INVALID_ARG, message)
