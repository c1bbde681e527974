#!/usr/bin/env bash
# Installs what herd needs to build and test, when it is missing: a C compiler, CMake, OpenMPI,
# CUnit, uthash, pkg-config, Python's venv module (Debian packages), numpy + pytest (PyPI) for
# the Python layer, scikit-build-core (PyPI) for the pip install / pip wheel tests, and torch +
# scikit-learn (PyPI; ~2 min and ~5 GB the first time) for herd.torch, its tests and the PyTorch
# example. HERD_DEPS_TORCH=0 skips those two; if their install fails, herd builds and tests
# without them (the torch tests are then not registered, demo.sh trains the numpy model).
# tensorflow-cpu (PyPI; ~30 s and ~1 GB the first time) for the op library libherd_tf.so,
# herd.tensorflow / herd.keras and their tests; HERD_DEPS_TF=0 skips it, and herd builds and
# tests without it when the install fails (the op library and its tests are then skipped).
# With HERD_DEPS_CLANG=1 (scripts/test.sh sets it for its fuzz stage) also clang and its
# sanitizer/libFuzzer runtimes; gcc's ASan, UBSan and TSan runtimes come with gcc.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v c++ >/dev/null || missing+=(g++)
command -v cmake >/dev/null || missing+=(cmake)
command -v mpicc >/dev/null || missing+=(libopenmpi-dev)
command -v mpiexec >/dev/null || missing+=(openmpi-bin)
command -v pkg-config >/dev/null || missing+=(pkg-config)
[ -f /usr/include/CUnit/Basic.h ] || missing+=(libcunit1-dev)
[ -f /usr/include/uthash.h ] || missing+=(uthash-dev)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
# Debian splits venv/ensurepip out of python3; tests/install makes a virtualenv.
command -v python3 >/dev/null && ! python3 -c 'import venv, ensurepip' 2>/dev/null &&
    missing+=(python3-venv)
if [ "${HERD_DEPS_CLANG:-0}" = 1 ]; then
    command -v clang >/dev/null || missing+=(clang)
    # -fsanitize=fuzzer needs libclang_rt.fuzzer, which plain `clang` may not pull in.
    fuzzer_rt=$(clang -print-file-name="libclang_rt.fuzzer-$(uname -m).a" 2>/dev/null || true)
    [ -f "$fuzzer_rt" ] || missing+=(libclang-rt-dev)
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "herd: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "herd: need root to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

pydeps=()
python3 -c 'import numpy' 2>/dev/null || pydeps+=(numpy)
python3 -c 'import pytest' 2>/dev/null || pydeps+=(pytest)
python3 -c 'import scikit_build_core' 2>/dev/null || pydeps+=(scikit-build-core)
if [ ${#pydeps[@]} -gt 0 ]; then
    echo "herd: installing ${pydeps[*]}"
    python3 -m pip install -q "${pydeps[@]}" 2>/dev/null ||
        python3 -m pip install -q --break-system-packages "${pydeps[@]}"
fi

if [ "${HERD_DEPS_TORCH:-1}" != 0 ] && ! python3 -c 'import torch, sklearn' 2>/dev/null; then
    echo "herd: installing torch and scikit-learn (the first time: about 2 minutes, 5 GB)"
    python3 -m pip install -q torch scikit-learn 2>/dev/null ||
        python3 -m pip install -q --break-system-packages torch scikit-learn ||
        echo "herd: could not install torch and scikit-learn; herd.torch is not tested" >&2
fi

# find_spec, not an import: importing TensorFlow takes seconds, and this runs before every test.
have_tf='import importlib.util, sys; sys.exit(importlib.util.find_spec("tensorflow") is None)'
if [ "${HERD_DEPS_TF:-1}" != 0 ] && ! python3 -c "$have_tf" 2>/dev/null; then
    echo "herd: installing tensorflow-cpu (the first time: about 30 s, 1 GB)"
    python3 -m pip install -q tensorflow-cpu 2>/dev/null ||
        python3 -m pip install -q --break-system-packages tensorflow-cpu ||
        echo "herd: could not install tensorflow-cpu; herd.tensorflow is not built or tested" >&2
fi
