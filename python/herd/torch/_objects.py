"""Python objects between ranks: broadcast_object (on herd's broadcast) and allgather_object."""

import io
import pickle

import torch

import herd

from . import _ops


def broadcast_object(obj, root_rank=0, name=None, process_set=_ops.global_process_set):
    """Returns root_rank's `obj` on every rank (pickled on the root; `obj` is ignored elsewhere).

    Every rank must call it, in the same order relative to other unnamed calls. The object must
    be picklable on the root; torch tensors inside come back as CPU-or-original-device tensors
    as pickle restores them. Raises pickle errors on the root and HerdError when the ranks
    disagree (e.g. different root_rank).
    """
    _ops._check_process_set(process_set)
    if herd.rank() == root_rank:
        buf = io.BytesIO()
        torch.save(obj, buf, pickle_protocol=pickle.HIGHEST_PROTOCOL)
        payload = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.int64)
    else:
        size = torch.zeros(1, dtype=torch.int64)
    # Unnamed calls take counter names (only the root knows the object's type, so Horovod's
    # type-name default would not agree across ranks).
    _ops.broadcast_(size, root_rank, name=None if name is None else f"{name}.size")
    if herd.rank() != root_rank:
        payload = torch.empty(int(size.item()), dtype=torch.uint8)
    _ops.broadcast_(payload, root_rank, name=None if name is None else f"{name}.data")
    if herd.rank() == root_rank:
        return obj
    return torch.load(io.BytesIO(payload.numpy().tobytes()), weights_only=False)


def allgather_object(obj, name=None, process_set=_ops.global_process_set):
    """Returns [obj of rank 0, obj of rank 1, ...] on every rank. Needs herd.allgather_object
    (issue 9's collectives): NotSupportedError otherwise."""
    _ops._check_process_set(process_set)
    return _ops._need("allgather_object")(obj)
