#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build herd, then run the C demo and
# the Python data-parallel training with several ranks on this machine (CPU, MPI over shared
# memory). Usage: bash scripts/demo.sh [ranks]   (default 4)
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

if [ -f examples/python/train.py ]; then
    echo "== Python: data-parallel training, $ranks ranks"
    "${herdrun[@]}" -np "$ranks" python3 examples/python/train.py
fi
