#!/usr/bin/env bash
# pip install . and pip wheel . as a Python user would, in one fresh virtualenv:
#   1. `pip install .` of the checkout (scikit-build-core runs CMake; build isolation, so its
#      build requirements come from PyPI), then from a scratch directory with nothing on
#      PYTHONPATH or LD_LIBRARY_PATH: `python -m herd --version`, and `herdrun -np 2 python -c`
#      reducing exact values; the loaded libherd must be the one inside the venv.
#   2. `pip wheel .` reusing the same CMake build directory (no build isolation: the venv sees
#      scikit-build-core installed by scripts/deps.sh) with a CMake option passed through
#      (HERD_WITH_CUDA=OFF: only the data-plane stub recompiles), its contents checked, then the
#      package uninstalled and the wheel installed, and the same job run again. Where TensorFlow
#      is importable, the wheel must hold the op library and herd.tensorflow must load it.
# Usage: pip_install.sh <source dir> <work dir>
set -euo pipefail
src=$1 work=$2
rm -rf "$work" && mkdir -p "$work/run"
unset PYTHONPATH HERD_LIBRARY LD_LIBRARY_PATH VIRTUAL_ENV PYTHONHOME
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
step() { echo "== $* ($SECONDS s)"; }

step "venv"
python3 -m venv --system-site-packages "$work/venv"
venv=$work/venv
py=$venv/bin/python
export PATH=$venv/bin:$PATH

check_job() {
    cd "$work/run"
    local lib
    lib=$("$py" -c 'import herd; print(herd.library_path)')
    case "$lib" in
    "$venv"/*) echo "libherd: $lib" ;;
    *) echo "FAIL: herd loaded $lib, not the venv's copy" >&2; exit 1 ;;
    esac
    "$py" -m herd --version
    herdrun --check-build | grep '^herd ' >/dev/null
    # Rank r contributes (r + 1) * [0, 1, ..., 999] and 2^r: sums are exact in every dtype.
    herdrun -np 2 --verbose "$py" -c '
import numpy as np, herd
herd.init()
r, n = herd.rank(), herd.size()
tot = n * (n + 1) // 2
for dt in (np.int32, np.int64, np.float32, np.float64):
    x = (np.arange(1000) * (r + 1)).astype(dt)
    y = herd.push_pull(x, name="x." + np.dtype(dt).name)
    assert np.array_equal(y, (np.arange(1000) * tot).astype(dt)), (dt, y[:5])
b = np.full(7, 2.0 ** r, np.float32)
herd.push_pull_async(b, name="pow", out=b, op="max").wait()
assert (b == 2.0 ** (n - 1)).all(), b
herd.shutdown()
print("rank", r, "of", n, "exact")
' > "$work/job.out"
    cat "$work/job.out"
    [ "$(grep -c ' exact$' "$work/job.out")" = 2 ] || { echo "FAIL: not every rank checked" >&2; exit 1; }
    cd - >/dev/null
}

step "pip install . (build isolation)"
"$py" -m pip install -q --config-settings=build-dir="$work/skbuild" "$src"
check_job

step "pip wheel . (no build isolation, same build directory)"
"$py" -m pip wheel -q --no-build-isolation --no-deps \
    --config-settings=build-dir="$work/skbuild" \
    --config-settings=cmake.define.HERD_WITH_CUDA=OFF -w "$work/wheels" "$src"
whl=$(ls "$work/wheels"/herd-*.whl)
echo "wheel: $(basename "$whl")"
"$py" - "$whl" <<'PY'
import json, re, sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {"herd/__init__.py", "herd/run.py", "herd/__main__.py", "herd/herd_build_info.json"}
libs = [n for n in names if re.fullmatch(r"herd/libherd\.so\.[0-9]+", n)]
assert len(libs) == 1, f"wheel holds {libs or 'no'} herd/libherd.so.<SOVERSION>"
missing = need - names
stray = [n for n in names if n.startswith(("lib/", "include/", "herd/lib/"))]
assert not missing, f"wheel lacks {sorted(missing)}"
assert not stray, f"wheel holds {stray}"
info = json.loads(zipfile.ZipFile(sys.argv[1]).read("herd/herd_build_info.json"))
assert info["with_cuda_option"] == "OFF" and info["cuda"] is False, info
import importlib.util
# Built without isolation where TensorFlow is importable: the op library is in the wheel.
if importlib.util.find_spec("tensorflow") is not None:
    assert "herd/libherd_tf.so" in names, "wheel lacks herd/libherd_tf.so (TensorFlow found)"
PY
"$py" -m pip uninstall -q -y herd
"$py" -m pip install -q --no-deps "$whl"
check_job
have_tf='import importlib.util, sys; sys.exit(importlib.util.find_spec("tensorflow") is None)'
if "$py" -c "$have_tf"; then
    step "herd.tensorflow from the wheel"
    (cd "$work/run" && TF_CPP_MIN_LOG_LEVEL=3 "$py" -c '
import herd.tensorflow as hvd, tensorflow as tf
assert hvd.library_path.startswith("'"$venv"'/"), hvd.library_path
hvd.init()
assert hvd.allreduce(tf.ones([3]), op=hvd.Sum).numpy().tolist() == [1.0, 1.0, 1.0]
hvd.shutdown()
print("herd.tensorflow:", hvd.library_path)
')
fi
step "done"
