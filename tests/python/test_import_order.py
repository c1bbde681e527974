"""libherd keeps CUDA and NCCL out of the process's global namespace (STYLE D2, P6).

Python loads libherd with RTLD_GLOBAL. If libherd depended on libnccl.so.2 or libcudart at link
time, loading it first would make the NCCL the loader finds the whole process's NCCL, and a
framework imported next that needs symbols only its own newer NCCL has (torch: ncclCommResume...)
would fail to import. Each check runs in a fresh interpreter, outside mpiexec (no MPI variables),
so what it sees loaded is only what it did.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

import herd


def _run(code):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PMI_", "PRTE_", "HYDRA_", "MPI_LOCALRANK"))}
    env["HERD_LIBRARY"] = herd.library_path
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


_NOTHING_LOADED = r"""
import numpy as np
import herd

def loaded():
    with open("/proc/self/maps") as f:
        maps = f.read()
    return sorted({n for n in ("libnccl", "libcudart", "libcuda.so") if n in maps})

assert loaded() == [], "after import herd: " + repr(loaded())
herd.init()
a = np.arange(8, dtype=np.float32)
herd.push_pull(a, name="import_order.host", out=a)
assert (a == np.arange(8, dtype=np.float32) * herd.size()).all()
herd.shutdown()
assert loaded() == [], "after a host push_pull: " + repr(loaded())
print("ok")
"""


def test_import_herd_loads_no_cuda_or_nccl():
    """Importing herd and running host collectives loads neither CUDA nor NCCL."""
    r = _run(_NOTHING_LOADED)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok")


_HERD_THEN_TORCH = r"""
import herd
import torch
import torch.distributed
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else "-")
"""


def test_import_herd_then_torch():
    """import herd, then import torch: torch gets its own NCCL and cudart. Skipped only when
    torch is not installed; an import that fails (a missing symbol) fails the test."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    r = _run(_HERD_THEN_TORCH)
    assert r.returncode == 0, "import torch after import herd failed:\n" + r.stdout + r.stderr
