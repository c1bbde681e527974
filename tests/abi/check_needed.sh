#!/usr/bin/env bash
# abi_needed: libherd's link-time dependencies (DT_NEEDED) are what a C user expects (STYLE D2):
# libc, libm, pthreads, libdl, MPI. No CUDA runtime, driver or NCCL: those are dlopen()ed with
# RTLD_LOCAL on first GPU use, so a framework's own copies are never interposed (STYLE P6).
# Usage: check_needed.sh LIBHERD
set -euo pipefail
lib=$1
if ! command -v readelf >/dev/null; then
    echo "readelf not found (binutils)" >&2
    exit 1
fi
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "$lib needs:"
printf '  %s\n' $needed
bad=0
for n in $needed; do
    case "$n" in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*.so.* | \
        libmpi.so.* | libmpi_*.so.* | libopen-*.so.* | libpmix.so.* | libhwloc.so.* | \
        libevent*.so.*)
        ;;
    *)
        echo "unexpected dependency: $n" >&2
        bad=1
        ;;
    esac
done
if echo "$needed" | grep -E -i 'nccl|cudart|libcuda' >/dev/null; then
    echo "libherd links CUDA or NCCL at load time; it must dlopen them (RTLD_LOCAL)" >&2
    bad=1
fi
exit $bad
