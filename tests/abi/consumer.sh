#!/usr/bin/env bash
# Installs herd into a scratch prefix, then builds the C demo out of tree against the installed
# package twice (CMake find_package, then pkg-config) and runs both under mpiexec -n 3: random
# tensors submitted in random orders per rank, every element checked.
set -euo pipefail
build=$1 src=$2 work=$3
shift 3
mpiexec=("$@")
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
prefix=$work/prefix
libdir=$(dirname "$(find "$prefix" -name 'libherd.so' | head -1)")
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

echo "== find_package(herd)"
cmake -S "$src/examples/c" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" > "$work/cmake.log"
cmake --build "$work/cmake" > "$work/cmake-build.log"
"${mpiexec[@]}" -n 3 "$work/cmake/herd_demo" 120 3

echo "== pkg-config herd"
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -std=c11 -Wall -Wextra -Werror -o "$work/demo-pc" "$src/examples/c/demo.c" \
    $(pkg-config --cflags --libs herd)
"${mpiexec[@]}" -n 3 "$work/demo-pc" 120 3
echo "consumer OK"
