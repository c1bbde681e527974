#!/usr/bin/env bash
# One rank pinned to one core (taskset -c 0, as Open MPI's default binding would) must warn once
# at init, naming the fix; the same rank on every core must not.
# Usage: binding_warning.sh <herd_demo>
set -euo pipefail
demo=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
taskset -c 0 "$demo" 4 1 2>"$out" >/dev/null
cat "$out"
n=$(grep -c 'bound to a single core (cpu 0).*herdrun.*--bind-to none' "$out" || true)
[ "$n" = 1 ] || { echo "FAIL: expected one binding warning, found $n"; exit 1; }
if [ "$(taskset -c 0-1 nproc 2>/dev/null || echo 1)" -ge 2 ]; then
    taskset -c 0-1 "$demo" 4 1 2>"$out" >/dev/null
    if grep -q 'single core' "$out"; then
        echo "FAIL: warned with two cores in the mask"
        cat "$out"
        exit 1
    fi
fi
echo "binding warning OK"
