#!/usr/bin/env bash
# Every test on a fresh machine: install what is missing, build with warnings as errors, run all
# of ctest (unit, mpi, python, abi, bench smoke). Usage: bash scripts/test.sh [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
source scripts/env.sh
build=${HERD_BUILD_DIR:-build-test}

cmake -S . -B "$build" -DHERD_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 600 "$@"
