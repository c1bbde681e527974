"""herd and torch coexist in one process in either import order (fresh interpreters).

libherd is loaded RTLD_GLOBAL, so any CUDA or NCCL symbol it exports or pulls into the global
namespace would be interposed on torch's own copies. A libherd that still links the system's
libcudart/libnccl directly fails the herd-first order; that is the C side's fix (issue 10,
[P6]), so the test reports it as an expected failure naming the libraries, and passes as soon
as libherd keeps them behind dlopen(RTLD_LOCAL).
"""

import os
import subprocess
import sys

import pytest

import herd

ORDERS = {
    "herd_then_torch": "import herd\nimport torch\n",
    "torch_then_herd": "import torch\nimport herd\n",
    "herd_torch_submodule_first": "import herd.torch as hvd\nimport torch\n",
}
CHECK = (
    "t = torch.arange(6, dtype=torch.float32)\n"
    "assert int(torch.ones(3).sum()) == 3\n"
    "import herd.torch as hvd\n"
    "hvd.init()\n"
    "assert torch.equal(hvd.allreduce(t, op=hvd.Sum), t)\n"
    "if torch.cuda.is_available():\n"
    "    torch.zeros(1, device='cuda').add_(1)\n"
    "print('ok')\n"
)


def _direct_gpu_deps():
    """The CUDA/NCCL libraries libherd names as NEEDED (readelf), or []."""
    try:
        out = subprocess.run(["readelf", "-d", herd.library_path], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split("[")[1].rstrip("]") for line in out.splitlines()
            if "NEEDED" in line and ("cuda" in line or "nccl" in line)]


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_import_order(order):
    # A single-process child: without MPI launcher variables it runs as its own world.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    env["OMPI_ALLOW_RUN_AS_ROOT"] = env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    r = subprocess.run([sys.executable, "-c", ORDERS[order] + CHECK], capture_output=True,
                       text=True, env=env, timeout=240)
    if r.returncode != 0 and order != "torch_then_herd":
        deps = _direct_gpu_deps()
        if deps and "undefined symbol" in r.stderr:
            pytest.xfail(f"libherd links {', '.join(deps)} directly, so torch's own CUDA/NCCL "
                         "libraries lose their symbols (C-side fix pending)")
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_import_herd_does_not_import_torch():
    r = subprocess.run([sys.executable, "-c",
                        "import sys, herd\nassert 'torch' not in sys.modules\nprint('ok')"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_missing_torch_is_one_clear_import_error():
    code = ("import sys\nsys.modules['torch'] = None  # as if torch were not installed\n"
            "try:\n    import herd.torch\nexcept ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "herd.torch needs PyTorch" in r.stdout and "pip install torch" in r.stdout, r.stdout
