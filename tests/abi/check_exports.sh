#!/usr/bin/env bash
# The library exports exactly the public API: every herd_* function of herd.h, nothing else.
# With RTLD_GLOBAL, any leaked symbol would land in the whole process.
set -euo pipefail
lib=$1 expected=$2
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {sub(/@.*/, "", $3); print $3}' | sort)
if ! diff -u "$expected" <(echo "$actual"); then
    echo "FAIL: exports of $lib differ from $expected (- expected, + actual)"
    exit 1
fi
# And every exported function is declared in the public header.
header=$(dirname "$0")/../../include/herd.h
for sym in $actual; do
    grep -q "\b$sym(" "$header" || { echo "FAIL: $sym is exported but not in herd.h"; exit 1; }
done
echo "exports OK: $(echo "$actual" | wc -l) symbols"
