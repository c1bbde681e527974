#!/usr/bin/env bash
# herd_bench's 4-byte latency (incl. back to back), one workload step and bench/py_latency.py's
# back-to-back latency from Python, under three launches of 2 ranks: Open MPI's default binding (each rank on one core, herd's coordinator sharing it),
# mpirun --bind-to none, and herdrun (its own choice of flags). Rounds alternate the three
# launches so that other load on the machine hits each alike.
# Usage: bash bench/binding.sh [build dir] [rounds] [herd_bench args...]
#   default: build 3 --only latency,workload --workloads resnet50 --iters 10
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
build=${1:-build}
rounds=${2:-3}
shift $(($# > 2 ? 2 : $#))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--only latency,workload --workloads resnet50 --iters 10)
bench=$build/bench/herd_bench
args+=(--workload-dir bench/workloads)
export HERD_LIBRARY=$build/src/libherd.so PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
for r in $(seq 1 "$rounds"); do
    for mode in default none herdrun; do
        echo "=== round $r: $mode"
        case $mode in
        default) launch=(mpirun -np 2) ;;
        none) launch=(mpirun -np 2 --bind-to none) ;;
        herdrun) launch=(python3 -m herd.run -np 2 --verbose) ;;
        esac
        "${launch[@]}" "$bench" "${args[@]}"
        HERD_BENCH_BINDING=$mode "${launch[@]}" python3 bench/py_latency.py --blocks 5 --block 300
    done
done
