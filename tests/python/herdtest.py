"""Helpers shared by the Python tests (imported by name: pytest puts this folder on sys.path).

Every rank runs the same tests in the same order and herd is collective, so a test must make
the same sequence of herd calls on every rank. Tests therefore do all their herd calls first and
assert afterwards, and wait with a timeout: a rank whose peers diverged fails with
HerdTimeoutError instead of hanging the job.
"""

import os

import numpy as np

# Seconds any single wait in a test may take before it fails.
WAIT = float(os.environ.get("HERD_TEST_WAIT", "60"))

DTYPES = ["uint8", "int8", "int32", "int64", "float16", "bfloat16", "float32", "float64"]
OPS = ["sum", "average", "min", "max", "product"]
FLOATS = {"float16", "bfloat16", "float32", "float64"}


def to_bf16(values):
    """float values (exactly representable in bfloat16) -> their bfloat16 bits as uint16."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    assert not np.any(bits & 0xFFFF), "value not exact in bfloat16"
    return (bits >> 16).astype(np.uint16)


def from_bf16(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def storage(dtype):
    """The numpy dtype a test array of herd dtype `dtype` uses (bfloat16: its bits in uint16)."""
    return np.dtype(np.uint16) if dtype == "bfloat16" else np.dtype(dtype)


def make(values, dtype):
    """An array of herd dtype `dtype` holding the exact integer `values`."""
    if dtype == "bfloat16":
        return to_bf16(np.asarray(values, dtype=np.float64))
    return np.asarray(values, dtype=np.float64).astype(storage(dtype))


def as_float64(arr, dtype):
    """Values of a test array, exactly, as float64 (bfloat16 decoded from its bits)."""
    if dtype == "bfloat16":
        return from_bf16(arr).astype(np.float64)
    return np.asarray(arr).astype(np.float64)


def kwargs(dtype):
    """Extra push_pull/broadcast arguments a dtype needs (bfloat16 bits need the override)."""
    return {"dtype": "bfloat16"} if dtype == "bfloat16" else {}
