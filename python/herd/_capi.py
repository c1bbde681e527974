"""Finds, loads and declares libherd; the one module that knows C signatures.

The library is loaded with RTLD_GLOBAL so that a framework's own compiled extension (a
"framework op" built without linking libherd) can resolve herd_* symbols from the copy Python
loaded: one libherd per process, one coordinator thread, one set of handles.

Search order, first hit wins:
  1. $HERD_LIBRARY, a path to the library file (an error if it names nothing loadable);
  2. libherd.so* installed beside this package (pip install with a bundled library);
  3. the build tree, when this package is imported from a source checkout
     (<checkout>/build/src/libherd.so, then other <checkout>/build*/ folders);
  4. ctypes.util.find_library("herd"), i.e. the system's library path.
"""

import ctypes
import ctypes.util
import os
from pathlib import Path

# Must equal herd_abi_version() of the loaded library (HERD_ABI_VERSION in herd.h).
ABI_VERSION = 2

# Status codes, element types, ops and devices: copies of herd.h's pinned values.
OK = 0
INPROGRESS = 1
ERR_INVALID_ARG = -1
ERR_INVALID_USAGE = -2
ERR_NOT_FOUND = -3
ERR_NOT_SUPPORTED = -4
ERR_NO_MEMORY = -5
ERR_BACKEND = -6
ERR_MISMATCH = -7
ERR_TIMEOUT = -8
ERR_SHUTDOWN = -9
ERR_INTERNAL = -10
ERR_STALLED = -11

UINT8 = 0
INT8 = 1
INT32 = 2
INT64 = 3
FLOAT16 = 4
BFLOAT16 = 5
FLOAT32 = 6
FLOAT64 = 7

SUM = 0
AVERAGE = 1
MIN = 2
MAX = 3
PRODUCT = 4

DEVICE_CPU = -1
MAX_NAME_LEN = 255

_int = ctypes.c_int
_i64 = ctypes.c_int64
_i64_p = ctypes.POINTER(ctypes.c_int64)
_str = ctypes.c_char_p
_ptr = ctypes.c_void_p
_ptr_p = ctypes.POINTER(ctypes.c_void_p)
_int_p = ctypes.POINTER(ctypes.c_int)
_dbl = ctypes.c_double

# Every function libherd exports: name -> (argtypes, restype). A test checks that this set equals
# the library's dynamic exports and the HERD_API declarations in herd.h.
SIGNATURES = {
    "herd_init": ([], _int),
    "herd_shutdown": ([], _int),
    "herd_initialized": ([], _int),
    "herd_rank": ([], _int),
    "herd_size": ([], _int),
    "herd_local_rank": ([], _int),
    "herd_local_size": ([], _int),
    "herd_declare_tensor": ([_str, _i64_p], _int),
    "herd_push_pull": ([_str, _ptr, _ptr, _i64, _int, _int, _int, _i64_p], _int),
    "herd_broadcast": ([_str, _ptr, _i64, _int, _int, _int, _i64_p], _int),
    "herd_poll_handle": ([_i64], _int),
    "herd_wait_handle": ([_i64, _i64], _int),
    "herd_strerror": ([_int], _str),
    "herd_status_name": ([_int], _str),
    "herd_last_error": ([], _str),
    "herd_abi_version": ([], _int),
    "herd_version": ([], _str),
    "herd_dtype_size": ([_int], _int),
    "herd_set_cuda_stream": ([_ptr], _int),
    "herd_handle_stream_wait": ([_i64, _ptr], _int),
    "herd_push_pull_scaled": ([_str, _ptr, _ptr, _i64, _int, _int, _dbl, _dbl, _int, _i64_p],
                              _int),
    "herd_allgather": ([_str, _ptr, _ptr, _i64, _int, _int, _i64_p], _int),
    "herd_allgatherv": ([_str, _ptr, _i64, _i64, _int, _int, _ptr_p, _i64_p, _i64_p], _int),
    "herd_reducescatter": ([_str, _ptr, _ptr, _i64, _int, _int, _int, _i64_p], _int),
    "herd_reducescatterv": ([_str, _ptr, _ptr, _i64, _i64, _int, _int, _int, _i64_p], _int),
    "herd_reducescatter_rows": ([_i64, _int, _int], _i64),
    "herd_alltoall": ([_str, _ptr, _ptr, _i64, _int, _int, _i64_p], _int),
    "herd_alltoallv": ([_str, _ptr, _i64_p, _i64, _int, _int, _ptr_p, _i64_p, _i64_p], _int),
    "herd_barrier": ([_str, _i64_p], _int),
    "herd_join": ([_int, _int_p, _i64_p], _int),
    "herd_group_start": ([], _int),
    "herd_group_end": ([], _int),
    "herd_free": ([_ptr, _int], _int),
    "herd_progress_handle": ([_i64, _i64], _int),
    "herd_push_pull_sync": ([_str, _ptr, _ptr, _i64, _int, _int, _int, _i64, _i64_p], _int),
    "herd_counter": ([_str, _i64_p], _int),
    "herd_counter_name": ([_int], _str),
}


def _source_checkout():
    """The checkout this package sits in (python/herd/ inside it), or None when installed."""
    root = Path(__file__).resolve().parent.parent.parent
    if (root / "include" / "herd.h").is_file() and (root / "python" / "herd").is_dir():
        return root
    return None


def _candidates():
    """Yields (where, path-or-name) in search order; the env variable is handled by _find."""
    here = Path(__file__).resolve().parent
    beside = sorted(here.glob("libherd.so*"), key=lambda p: (p.name != "libherd.so", p.name))
    for p in beside:
        yield "installed beside the package", str(p)
    root = _source_checkout()
    if root is not None:
        builds = [root / "build"] + sorted(p for p in root.glob("build?*") if p.is_dir())
        for b in builds:
            for sub in ("src", "lib", "."):
                p = b / sub / "libherd.so"
                if p.exists():
                    yield "build tree", str(p)
    name = ctypes.util.find_library("herd")
    if name:
        yield "system library path", name


def _find_and_load():
    env = os.environ.get("HERD_LIBRARY")
    if env:
        try:
            return ctypes.CDLL(env, mode=ctypes.RTLD_GLOBAL), env
        except OSError as e:
            raise ImportError(f"herd: cannot load HERD_LIBRARY={env!r}: {e}") from None
    tried = []
    for where, path in _candidates():
        try:
            return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL), path
        except OSError as e:
            tried.append(f"  {path} ({where}): {e}")
    detail = "\n".join(tried) if tried else "  (no candidate found)"
    raise ImportError(
        "herd: cannot find libherd. Set HERD_LIBRARY to the library file, install the package "
        "with the library bundled, import it from a built checkout (build/src/libherd.so), or "
        "put libherd on the system library path. Tried:\n" + detail
    )


def _declare(cdll, path):
    missing = [n for n in SIGNATURES if not hasattr(cdll, n)]
    if "herd_abi_version" in missing:
        raise ImportError(f"herd: {path} is not libherd (no herd_abi_version)")
    cdll.herd_abi_version.argtypes = []
    cdll.herd_abi_version.restype = ctypes.c_int
    abi = cdll.herd_abi_version()
    if abi != ABI_VERSION:
        raise ImportError(
            f"herd: {path} has ABI version {abi}, but this Python package needs ABI version "
            f"{ABI_VERSION}; install the herd Python package and library from the same release"
        )
    if missing:
        raise ImportError(f"herd: {path} lacks {', '.join(missing)}; is it a broken build?")
    for name, (argtypes, restype) in SIGNATURES.items():
        fn = getattr(cdll, name)
        fn.argtypes = argtypes
        fn.restype = restype


lib, path = _find_and_load()
_declare(lib, path)


def text(raw):
    """A const char * result as str ("" for NULL)."""
    return raw.decode("utf-8", "replace") if raw else ""
