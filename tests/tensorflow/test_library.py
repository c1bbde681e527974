"""The op library: found and loaded by herd.tensorflow after `import herd`, never linked to
libherd (RTLD_GLOBAL, as tests/python/plugin), refused clearly when herd is not loaded."""

import os
import shutil
import subprocess
import sys

import pytest

import herd
import herd.tensorflow as hvd


def test_loaded_after_import_herd_and_not_linked_to_libherd():
    path = hvd.library_path
    assert os.path.exists(path)
    if shutil.which("nm") is None or shutil.which("readelf") is None:
        pytest.skip("binutils not found")
    undefined = subprocess.run(["nm", "-D", "--undefined-only", path], check=True,
                               capture_output=True, text=True).stdout.split()
    assert "herd_push_pull" in undefined and "herd_wait_handle" in undefined
    dynamic = subprocess.run(["readelf", "-d", path], check=True, capture_output=True,
                             text=True).stdout
    needed = [line for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert not any("libherd." in line for line in needed), needed
    assert "BIND_NOW" in dynamic or "NOW" in dynamic


# One fresh interpreter (TensorFlow's import is the cost): loading the op library before herd
# fails and names the missing herd symbol; after `import herd` the same file loads, and an op
# before herd.init() fails with herd's usage error instead of crashing.
_SCRIPT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
path = sys.argv[1]
try:
    tf.load_op_library(path)
except Exception as e:
    print("REFUSED", type(e).__name__, e)
else:
    print("LOADED WITHOUT HERD")
import herd
lib = tf.load_op_library(path)
try:
    lib.herd_allreduce(tf.ones([2]), reduce_op=0)
except tf.errors.FailedPreconditionError as e:
    print("BEFORE INIT", e)
"""


def test_refused_before_import_herd():
    if herd.rank() != 0:
        return  # one fresh interpreter is enough
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("OMPI_", "PMIX_", "PMI_")):
            del env[k]  # a plain process, not another MPI rank
    env["HERD_LIBRARY"] = herd.library_path
    p = subprocess.run([sys.executable, "-c", _SCRIPT, hvd.library_path], env=env,
                       capture_output=True, text=True, timeout=120)
    out = p.stdout
    assert "REFUSED" in out and "undefined symbol: herd_" in out, (out, p.stderr[-2000:])
    assert "BEFORE INIT" in out and "HERD_ERR_INVALID_USAGE" in out, (out, p.stderr[-2000:])


def test_library_lookup_error_is_clear(monkeypatch):
    from herd.tensorflow import _ops
    monkeypatch.setenv("HERD_TF_LIBRARY", "/nonexistent/libherd_tf.so")
    with pytest.raises(ImportError, match="HERD_TF_LIBRARY"):
        _ops._load_library()


def test_missing_tensorflow_is_one_clear_import_error():
    if herd.rank() != 0:
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    script = ("import sys; sys.modules['tensorflow'] = None\n"
              "try:\n    import herd.tensorflow\nexcept ImportError as e:\n    print('IE', e)\n"
              "import herd\nprint('herd', herd.version())\n")
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "IE herd.tensorflow needs TensorFlow" in p.stdout, (p.stdout, p.stderr[-2000:])
    assert "herd " in p.stdout  # plain `import herd` does not need TensorFlow
