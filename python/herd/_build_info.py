"""herd.build_info(): what this herd was built with and what it can use here.

Like `horovodrun --check-build`. Three sources, none of which starts MPI or imports a framework:
  - the loaded libherd: version, ABI version, path;
  - herd_build_info.json, which CMake writes beside libherd (build/src/ in a build tree, inside
    the package after `pip install .`): MPI it was built against, CUDA and NCCL support;
  - this process: the MPI library actually loaded (MPI_Get_library_version, callable before
    MPI_Init), and whether torch / TensorFlow are importable (found, not imported).
"""

import ctypes
import importlib.util
import json
import os
import shutil
from pathlib import Path

from . import _capi

_FILE = "herd_build_info.json"


def _json_near_library():
    here = Path(__file__).resolve().parent
    places = []
    lib = Path(_capi.path)
    if lib.is_absolute() or lib.parent != Path("."):
        places.append(lib.resolve().parent / _FILE)
    places.append(here / _FILE)
    for p in places:
        try:
            return json.loads(p.read_text()), str(p)
        except (OSError, ValueError):
            continue
    return {}, None


def _mpi_library_version():
    """The loaded MPI's own version line ('Open MPI v4.1.4, ...'), or None."""
    try:
        fn = ctypes.CDLL(None).MPI_Get_library_version
    except (OSError, AttributeError):
        return None
    buf = ctypes.create_string_buffer(8192)
    n = ctypes.c_int(0)
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    fn.restype = ctypes.c_int
    if fn(buf, ctypes.byref(n)) != 0:
        return None
    text = buf.value.decode("utf-8", "replace").strip()
    return text.splitlines()[0].strip() if text else None


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def tf_op_library_candidates():
    """Yields (where, path) of TensorFlow op libraries (libherd_tf.so) in herd.tensorflow's
    search order, after $HERD_TF_LIBRARY: beside the installed package, then a checkout's
    build*/src/tensorflow/. Needs no TensorFlow."""
    here = Path(__file__).resolve().parent
    for p in sorted(here.glob("libherd_tf.so*")):
        yield "installed beside the herd package", p
    root = here.parent.parent
    if (root / "include" / "herd.h").is_file():
        builds = [root / "build"] + sorted(p for p in root.glob("build?*") if p.is_dir())
        for b in builds:
            p = b / "src" / "tensorflow" / "libherd_tf.so"
            if p.exists():
                yield "build tree", p


def _tf_op_library():
    env = os.environ.get("HERD_TF_LIBRARY")
    if env:
        return env
    for _, p in tf_op_library_candidates():
        return str(p)
    return None


def build_info():
    """Returns a dict describing this herd build and its surroundings.

    Keys: version, python_version (the package's), abi_version, library (the loaded libherd's
    path), build_info_file, mpi_library (the MPI loaded in this process, its own version line),
    mpi_version (the MPI standard version built against), mpi_libraries, mpirun (on PATH, or
    None), cuda and nccl (built into libherd: True/False, None when unknown), torch and tensorflow
    (importable here: True/False; neither is imported), tensorflow_ops (the TensorFlow op
    library herd.tensorflow would load, or None). Never raises for a missing piece.
    """
    from . import __version__

    built, where = _json_near_library()
    lib = _capi.lib
    return {
        "version": _capi.text(lib.herd_version()),
        "python_version": __version__,
        "abi_version": lib.herd_abi_version(),
        "library": str(_capi.path),
        "build_info_file": where,
        "mpi_library": _mpi_library_version(),
        "mpi_version": built.get("mpi_version"),
        "mpi_libraries": built.get("mpi_libraries"),
        "mpirun": shutil.which("mpirun"),
        "cuda": built.get("cuda"),
        "nccl": built.get("nccl"),
        "torch": _importable("torch"),
        "tensorflow": _importable("tensorflow"),
        "tensorflow_ops": _tf_op_library(),
    }


def format_build_info(info):
    """build_info() as the text `python -m herd --version` prints."""

    def mark(v):
        return "[X]" if v else ("[?]" if v is None else "[ ]")

    def built(v):
        return "built" if v else ("unknown (no herd_build_info.json)" if v is None else "not built")

    def found(v):
        return "importable" if v else "not importable"

    lines = [
        f"herd {info['version']} (ABI {info['abi_version']}, Python package "
        f"{info['python_version']})",
        f"library:   {info['library']}",
        f"MPI:       {info['mpi_library'] or 'unknown'}"
        + (f" (built against MPI {info['mpi_version']})" if info["mpi_version"] else ""),
        f"mpirun:    {info['mpirun'] or 'not on PATH'}",
        "support:",
        "  [X] CPU tensors over MPI",
        f"  {mark(info['cuda'])} CUDA        {built(info['cuda'])}",
        f"  {mark(info['nccl'])} NCCL        {built(info['nccl'])}",
        f"  {mark(info['torch'])} torch       {found(info['torch'])}",
        f"  {mark(info['tensorflow'])} TensorFlow  {found(info['tensorflow'])}",
        f"  {mark(info['tensorflow_ops'])} TF ops      "
        + (info["tensorflow_ops"] or "libherd_tf.so not found (docs/tensorflow.md)"),
    ]
    return "\n".join(lines)
