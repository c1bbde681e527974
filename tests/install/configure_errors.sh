#!/usr/bin/env bash
# Configure-time dependency errors: cmake runs with one dependency hidden at a time and must stop
# (no Makefile written) with exactly one error naming the Debian package and the option that
# turns the part off. Usage: configure_errors.sh <source dir> <work dir> [cmake args...]
set -euo pipefail
src=$1 work=$2
shift 2
rm -rf "$work" && mkdir -p "$work"
fails=0
n=0
# expect_error <case> "<expected substrings separated by |>" <cmake args...>
expect_error() {
    local name=$1 want=$2
    shift 2
    n=$((n + 1))
    local dir=$work/$name log=$work/$name.log
    if cmake -S "$src" -B "$dir" -DHERD_BUILD_BENCH=OFF "$@" >"$log" 2>&1; then
        echo "FAIL $name: cmake succeeded"
        fails=$((fails + 1))
        return
    fi
    local ok=1 IFS='|' s
    for s in $want; do
        grep -qF -- "$s" "$log" || { echo "FAIL $name: no '$s' in the message"; ok=0; }
    done
    [ "$(grep -c 'CMake Error' "$log")" = 1 ] || { echo "FAIL $name: not exactly one error"; ok=0; }
    [ ! -f "$dir/Makefile" ] && [ ! -f "$dir/build.ninja" ] ||
        { echo "FAIL $name: build files written"; ok=0; }
    if [ $ok = 1 ]; then
        echo "ok   $name"
    else
        fails=$((fails + 1))
        sed 's/^/     | /' "$log" | grep -v '^     | --' || true
    fi
}

expect_error uthash "uthash-dev|uthash.h" -DCMAKE_DISABLE_FIND_PACKAGE_uthash=ON
expect_error cunit "libcunit1-dev|-DHERD_BUILD_TESTS=OFF" -DCMAKE_DISABLE_FIND_PACKAGE_CUnit=ON
expect_error mpi "libopenmpi-dev|openmpi-bin" -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON
expect_error cuda "nvidia-cuda-toolkit|-DHERD_WITH_CUDA=AUTO or OFF" -DHERD_WITH_CUDA=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON
expect_error nccl "libnccl-dev|-DHERD_WITH_NCCL=AUTO" -DHERD_WITH_NCCL=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_NCCL=ON
# Two missing at once: one error listing both.
expect_error two "uthash-dev|libcunit1-dev" -DCMAKE_DISABLE_FIND_PACKAGE_uthash=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_CUnit=ON

# Without tests, CUnit is not needed: this configure succeeds.
n=$((n + 1))
if cmake -S "$src" -B "$work/no-tests" -DHERD_BUILD_BENCH=OFF -DHERD_BUILD_TESTS=OFF \
    -DCMAKE_DISABLE_FIND_PACKAGE_CUnit=ON >"$work/no-tests.log" 2>&1; then
    echo "ok   no-tests (CUnit not needed)"
else
    echo "FAIL no-tests: configure without tests needs CUnit"
    tail -20 "$work/no-tests.log"
    fails=$((fails + 1))
fi
echo "$((n - fails)) of $n configure cases passed"
[ $fails = 0 ]
