"""The RTLD_GLOBAL pattern: a compiled "framework op" that never linked libherd calls herd's C
API through the copy `import herd` loaded, sharing its coordinator and handles."""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

import herd
from herdtest import WAIT

PLUGIN = os.environ.get("HERD_TEST_PLUGIN")
pytestmark = pytest.mark.skipif(not PLUGIN, reason="HERD_TEST_PLUGIN is not set (ctest sets it)")


def _load():
    plugin = ctypes.CDLL(PLUGIN)  # RTLD_LOCAL: its own symbols stay private; herd_* are global
    plugin.plugin_rank.argtypes = []
    plugin.plugin_rank.restype = ctypes.c_int
    plugin.plugin_allreduce_f32.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64,
                                            ctypes.c_int]
    plugin.plugin_allreduce_f32.restype = ctypes.c_int
    plugin.plugin_broadcast_i64.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64,
                                            ctypes.c_int]
    plugin.plugin_broadcast_i64.restype = ctypes.c_int
    return plugin


def test_plugin_does_not_link_libherd():
    if shutil.which("nm") is None or shutil.which("readelf") is None:
        pytest.skip("binutils not found")
    undefined = subprocess.run(["nm", "-D", "--undefined-only", PLUGIN], check=True,
                               capture_output=True, text=True).stdout.split()
    assert "herd_push_pull" in undefined and "herd_wait_handle" in undefined
    dynamic = subprocess.run(["readelf", "-d", PLUGIN], check=True, capture_output=True,
                             text=True).stdout
    needed = [line for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert not any("libherd" in line for line in needed), needed


def test_plugin_calls_herd_through_global_symbols():
    r, n = herd.rank(), herd.size()
    plugin = _load()
    assert plugin.plugin_rank() == r
    buf = (np.arange(10) + r).astype(np.float32)
    # Python and the plugin use the one coordinator at once: a Python op in flight meanwhile.
    py = np.full(3, r, np.int64)
    h = herd.push_pull_async(py, name="plugin.python_side", out=py)
    st_sum = plugin.plugin_allreduce_f32(b"plugin.sum", buf.ctypes.data, buf.size, herd.SUM)
    ids = np.full(4, 10 * r + 7, np.int64)
    root = n - 1
    st_bc = plugin.plugin_broadcast_i64(b"plugin.bcast", ids.ctypes.data, ids.size, root)
    st_bad = plugin.plugin_allreduce_f32(b"plugin.bad_op", buf.ctypes.data, buf.size, 99)
    h.wait(WAIT)
    assert st_sum == 0, herd.status_name(st_sum)
    assert np.array_equal(buf, (np.arange(10) * n + n * (n - 1) // 2).astype(np.float32))
    assert st_bc == 0 and np.all(ids == 10 * root + 7)
    assert st_bad == herd.ERR_INVALID_ARG
    assert np.all(py == n * (n - 1) // 2)
