"""Loading, declarations and queries: the package matches the library it loaded."""

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import herd
from herd import _capi

SOURCE_DIR = Path(os.environ.get("HERD_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def _exports():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not found")
    out = subprocess.run([nm, "-D", "--defined-only", herd.library_path], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[-1].startswith("herd_"):
            names.add(parts[-1].split("@")[0])
    return names


def _header_prototypes():
    text = (SOURCE_DIR / "include" / "herd.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    protos = {}
    for m in re.finditer(r"HERD_API\s+[\w\s\*]+?\b(herd_\w+)\s*\(([^)]*)\)\s*;", text):
        args = [a for a in m.group(2).split(",") if a.strip() and a.strip() != "void"]
        protos[m.group(1)] = len(args)
    return protos


def test_declared_set_equals_exported_set():
    assert set(_capi.SIGNATURES) == _exports()


def test_declarations_match_header():
    protos = _header_prototypes()
    assert protos, "no HERD_API prototypes parsed from herd.h"
    assert set(protos) == set(_capi.SIGNATURES)
    for name, nargs in protos.items():
        assert len(_capi.SIGNATURES[name][0]) == nargs, name
        fn = getattr(_capi.lib, name)
        assert fn.argtypes == _capi.SIGNATURES[name][0], name


def test_loaded_with_rtld_global_and_right_abi():
    assert herd.abi_version() == herd.ABI_VERSION == 2
    # RTLD_GLOBAL: the process's global scope now resolves herd symbols.
    glob = ctypes.CDLL(None)
    assert ctypes.cast(glob.herd_push_pull, ctypes.c_void_p).value == \
        ctypes.cast(_capi.lib.herd_push_pull, ctypes.c_void_p).value


def test_version_matches_package():
    assert herd.version() == herd.__version__
    text = (SOURCE_DIR / "include" / "herd.h").read_text()
    parts = [re.search(rf"#define HERD_VERSION_{p} (\d+)", text).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    assert herd.version() == ".".join(parts)


def test_constants_match_header():
    text = (SOURCE_DIR / "include" / "herd.h").read_text()
    for m in re.finditer(r"\bHERD_([A-Z0-9_]+)\s*=\s*(-?\d+)", text):
        assert getattr(_capi, m.group(1)) == int(m.group(2)), m.group(1)


def test_rank_and_size():
    r, n = herd.rank(), herd.size()
    assert 0 <= r < n
    if "OMPI_COMM_WORLD_SIZE" in os.environ:
        assert n == int(os.environ["OMPI_COMM_WORLD_SIZE"])
        assert r == int(os.environ["OMPI_COMM_WORLD_RANK"])
    lr, ln = herd.local_rank(), herd.local_size()
    assert 0 <= lr < ln <= n
    assert herd.is_initialized()


def test_init_again_is_harmless():
    herd.init()
    assert herd.is_initialized()


def test_declare_returns_stable_keys():
    k1 = herd.declare("declared.a")
    k2 = herd.declare("declared.b")
    assert k1 >= 0 and k2 >= 0 and k1 != k2
    assert herd.declare("declared.a") == k1


def test_status_names_and_error_classes():
    classes = {
        herd.ERR_INVALID_ARG: herd.InvalidArgumentError,
        herd.ERR_INVALID_USAGE: herd.InvalidUsageError,
        herd.ERR_NOT_FOUND: herd.NotFoundError,
        herd.ERR_NOT_SUPPORTED: herd.NotSupportedError,
        herd.ERR_NO_MEMORY: herd.NoMemoryError,
        herd.ERR_BACKEND: herd.BackendError,
        herd.ERR_MISMATCH: herd.MismatchError,
        herd.ERR_TIMEOUT: herd.HerdTimeoutError,
        herd.ERR_SHUTDOWN: herd.ShutdownError,
        herd.ERR_INTERNAL: herd.InternalError,
    }
    for status, cls in classes.items():
        name = herd.status_name(status)
        assert name.startswith("HERD_ERR_")
        assert herd.strerror(status)
        e = herd.errors.make(status, "m")
        assert type(e) is cls and isinstance(e, herd.HerdError)
        assert (e.status, e.code, e.name, e.message) == (status, status, name, "m")
        assert str(e) == f"{name}: m"
    assert herd.status_name(0) == "HERD_OK"
    assert issubclass(herd.InvalidArgumentError, ValueError)


def test_abi_mismatch_is_a_clear_import_error():
    class Fn:
        def __init__(self, value):
            self.value = value

        def __call__(self):
            return self.value

    class FakeLib:
        herd_abi_version = Fn(herd.ABI_VERSION + 1)

    want = (f"ABI version {herd.ABI_VERSION + 1}, but this Python package needs ABI version "
            f"{herd.ABI_VERSION}")
    with pytest.raises(ImportError, match=want):
        _capi._declare(FakeLib(), "/fake/libherd.so")


def test_library_search(monkeypatch):
    monkeypatch.setenv("HERD_LIBRARY", "/nonexistent/libherd.so")
    with pytest.raises(ImportError, match="HERD_LIBRARY='/nonexistent/libherd.so'"):
        _capi._find_and_load()
    # From a checkout, the build tree is among the candidates: the library ctest built is.
    loaded = Path(herd.library_path).resolve()
    if SOURCE_DIR.resolve() in loaded.parents and _capi._source_checkout() is not None:
        found = [Path(p).resolve() for where, p in _capi._candidates() if where == "build tree"]
        assert loaded in found, found


def test_open_mpi_yields_when_idle_unless_the_user_said_otherwise():
    # herd initialised MPI here (conftest), so it asked Open MPI to yield while a collective
    # waits, keeping whatever value the launch gave (docs/performance.md: patient waiting).
    if "open mpi" not in herd.build_info().get("mpi_library", "").lower():
        pytest.skip("an Open MPI setting")
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    launched = os.environ.get("OMPI_MCA_mpi_yield_when_idle")
    now = libc.getenv(b"OMPI_MCA_mpi_yield_when_idle")
    assert now == (launched.encode() if launched is not None else b"1")


def test_counters_count_rounds_and_operations():
    before = herd.counters()
    assert list(before) == herd.counter_names()
    assert {"ops", "rounds", "rounds_on_caller", "handoffs"} <= set(before)
    for _ in range(3):
        x = np.ones(2, np.float32)
        herd.push_pull(x, name="ctr.x", out=x)
        assert x.tolist() == [herd.size()] * 2
    after = herd.counters()
    assert after["ops"] - before["ops"] == 3
    assert after["rounds"] - before["rounds"] >= 1
    with pytest.raises(herd.InvalidArgumentError, match="no counter named 'nope'"):
        herd.errors.check(herd._core.lib.herd_counter(b"nope", ctypes.byref(ctypes.c_int64())))
