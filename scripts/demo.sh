#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build herd, then run the C demo and
# data-parallel training with several ranks on this machine (CPU, MPI over shared memory): the
# PyTorch CNN of examples/pytorch with herd.torch, or, where torch could not be installed, the
# numpy MLP of examples/python. Usage: bash scripts/demo.sh [ranks]   (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
source scripts/env.sh
ranks=${1:-4}
build=${HERD_BUILD_DIR:-build}

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHERD_BUILD_TESTS=OFF -DHERD_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
build=$(cd "$build" && pwd)

# herdrun (python -m herd.run from this checkout) runs mpirun with the binding herd needs and
# forwards HERD_* to every rank; after `pip install .` it is the `herdrun` command.
export HERD_LIBRARY="$build/src/libherd.so" PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
herdrun=(python3 -m herd.run)

echo "== C demo: $ranks ranks, random tensors in random orders, checked exactly"
"${herdrun[@]}" -np "$ranks" "$build/examples/herd_demo" 200 5

if python3 -c 'import torch, sklearn' 2>/dev/null; then
    echo "== PyTorch: a CNN on scikit-learn's digits with herd.torch, $ranks ranks, checked" \
         "against one process on the same global batches"
    "${herdrun[@]}" -np "$ranks" python3 examples/pytorch/train.py --check-single \
        --min-accuracy 0.95
else
    echo "== Python (numpy; no torch here): data-parallel training, $ranks ranks"
    "${herdrun[@]}" -np "$ranks" python3 examples/python/train.py
fi
