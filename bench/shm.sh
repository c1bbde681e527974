#!/usr/bin/env bash
# The shared-memory plane (docs/shm.md) against herd over MPI (HERD_SHM=0) and plain MPI: 2 ranks,
# herd_bench's bandwidth sweep and workload steps, under Open MPI's default binding and
# --bind-to none. Each launch measures herd and the plain-MPI baselines interleaved in one
# process; rounds alternate the four launches so that other load hits each alike. Every launch's
# JSON is kept in OUT, and bench/shm_summary.py prints medians over rounds, with the best and
# worst round beside them.
# Usage: bash bench/shm.sh [build dir] [rounds] [out dir] [herd_bench args...]
#   default: build 3 /tmp/herd-shm --only sweep,workload --workloads resnet50,bert_base,gpt2_small
#            --min-bytes 64K --max-bytes 64M --iters 10
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
build=${1:-build}
rounds=${2:-3}
out=${3:-/tmp/herd-shm}
shift $(($# > 3 ? 3 : $#))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--only sweep,workload --workloads resnet50,bert_base,gpt2_small
                               --min-bytes 64K --max-bytes 64M --iters 10)
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
    for bind in default none; do
        for shm in 1 0; do
            echo "=== round $r: binding $bind, HERD_SHM=$shm" >&2
            flags=()
            [ "$bind" = none ] && flags=(--bind-to none)
            HERD_SHM=$shm mpirun -np 2 "${flags[@]}" -x HERD_SHM "$build/bench/herd_bench" \
                "${args[@]}" --workload-dir bench/workloads --json \
                >"$out/r$r-$bind-shm$shm.json" 2>"$out/r$r-$bind-shm$shm.err" || true
        done
    done
done
python3 bench/shm_summary.py "$out"
