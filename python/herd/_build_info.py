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


def build_info():
    """Returns a dict describing this herd build and its surroundings.

    Keys: version, python_version (the package's), abi_version, library (the loaded libherd's
    path), build_info_file, mpi_library (the MPI loaded in this process, its own version line),
    mpi_version (the MPI standard version built against), mpi_libraries, mpirun (on PATH, or
    None), cuda and nccl (built into libherd: True/False, None when unknown), torch and tensorflow
    (importable here: True/False; neither is imported). Never raises for a missing piece.
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
    ]
    return "\n".join(lines)
