#!/usr/bin/env bash
# Every test on a fresh machine: install what is missing, build with warnings as errors, run all
# of ctest (unit, mpi, python, abi, bench smoke). Then the same code under the sanitizers and the
# fuzzers, each in a build directory of its own:
#   build-asan  ASan+UBSan (leaks too)  ctest -L '^(unit|mpi)$'
#   build-tsan  TSan                    ctest -L '^threads$' (suites that exercise herd's threads)
#   build-fuzz  libFuzzer, clang        ctest -L '^fuzz$' (HERD_FUZZ_SECONDS per target, 30)
# HERD_TEST_QUICK=1 runs the plain stage only. Every stage runs even if one before it failed; the
# script fails if any did, and ends with each stage's result and time.
# Usage: bash scripts/test.sh [ctest args for the plain stage...]
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${HERD_TEST_QUICK:-0}
[ "$quick" = 1 ] || export HERD_DEPS_CLANG=1
source scripts/deps.sh
source scripts/env.sh
build=${HERD_BUILD_DIR:-build-test}
jobs=$(nproc)

summary=()
failed=0
# stage <name> <function>: runs it in a subshell (its own environment and directory), timed.
stage() {
    local name=$1 start=$SECONDS rc
    echo "herd: stage $name"
    # Not `(...) || rc=$?`: inside an || list, set -e would be off in the subshell too.
    set +e
    (
        set -e
        "$2"
    )
    rc=$?
    set -e
    local took=$((SECONDS - start))
    if [ $rc -eq 0 ]; then
        summary+=("$(printf '%-6s ok      %4d s' "$name" "$took")")
    else
        summary+=("$(printf '%-6s FAILED  %4d s (exit %d)' "$name" "$took" "$rc")")
        failed=1
    fi
}

plain() {
    cmake -S . -B "$build" -DHERD_WERROR=ON >/dev/null
    cmake --build "$build" -j"$jobs"
    cd "$build"
    ctest --output-on-failure --timeout 600 "${ctest_args[@]}"
}

# The sanitizer builds use the default compiler (gcc); OpenMPI itself is not instrumented, and
# tests/sanitize/ holds the settings and the OpenMPI-only suppressions. The Python tests cannot
# load an instrumented libherd and are not registered there; nor is the benchmark.
asan() {
    cmake -S . -B build-asan -DHERD_SANITIZE=address -DHERD_BUILD_BENCH=OFF >/dev/null
    cmake --build build-asan -j"$jobs"
    source tests/sanitize/env.sh address
    cd build-asan
    ctest --output-on-failure --timeout 600 -L '^(unit|mpi)$'
}

tsan() {
    cmake -S . -B build-tsan -DHERD_SANITIZE=thread -DHERD_BUILD_BENCH=OFF >/dev/null
    cmake --build build-tsan -j"$jobs"
    source tests/sanitize/env.sh thread
    cd build-tsan
    ctest --output-on-failure --timeout 600 -L '^threads$'
}

fuzz() {
    cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DHERD_BUILD_FUZZ=ON \
        -DHERD_BUILD_TESTS=OFF -DHERD_BUILD_BENCH=OFF \
        -DHERD_FUZZ_SECONDS="${HERD_FUZZ_SECONDS:-30}" >/dev/null
    cmake --build build-fuzz -j"$jobs" --target fuzz_wire fuzz_config
    cd build-fuzz
    ctest --output-on-failure -L '^fuzz$'
}

ctest_args=("$@")
stage plain plain
if [ "$quick" != 1 ]; then
    stage asan asan
    stage tsan tsan
    stage fuzz fuzz
fi

echo "herd: test stages (HERD_TEST_QUICK=1 runs the plain one only):"
printf '  %s\n' "${summary[@]}"
exit $failed
