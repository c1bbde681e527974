#!/usr/bin/env bash
# run_mpi_tests.sh - herd's MPI test suites and the C demo on a pretend cluster: 3 hosts
# (network namespaces, see netns.sh), one rank each, one mpirun job per suite over OpenMPI's TCP
# transport. Every byte between ranks crosses a veth cable and a bridge; no rank shares memory
# with another (herd_local_size() is 1 everywhere).
#
#   run_mpi_tests.sh BUILD_DIR [SUITE...]     (root; exits 77 when namespaces are unavailable)
#
# SUITE names are those of tests/mpi (allreduce, broadcast, ...), "allreduce_chunked",
# "allreduce_hier", "allreduce_noshm" and "demo"; the default is all of the list below. Settings
# mirror tests/mpi/CMakeLists.txt. CLUSTER_HOSTS=H CLUSTER_SLOTS=S (default 3 and 1) run H hosts
# with S ranks each: with S > 1 the ranks of a host share memory, and herd's allreduce is
# hierarchical (shared-memory plane within the host, MPI across hosts: docs/shm.md).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/netns.sh"

if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [SUITE...]" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
shift
cluster_require

small_fusion="HERD_FUSION_THRESHOLD=65536"
# name | executable (relative to the build dir) | environment | arguments
suites=(
    "allreduce|tests/mpi/mpi_allreduce|$small_fusion|"
    "allreduce_chunked|tests/mpi/mpi_allreduce|$small_fusion HERD_CHUNK_BYTES=1001|"
    "allreduce_hier|tests/mpi/mpi_allreduce|$small_fusion HERD_SHM_BYTES=16K HERD_LOG_LEVEL=info|"
    "allreduce_noshm|tests/mpi/mpi_allreduce|$small_fusion HERD_SHM=0|"
    "collectives|tests/mpi/mpi_collectives|$small_fusion|"
    "broadcast|tests/mpi/mpi_broadcast|$small_fusion|"
    "many|tests/mpi/mpi_many|$small_fusion|"
    "threads|tests/mpi/mpi_threads||"
    "mismatch|tests/mpi/mpi_mismatch||"
    "handles|tests/mpi/mpi_handles||"
    "shutdown|tests/mpi/mpi_shutdown||"
    "stall|tests/mpi/mpi_stall|HERD_STALL_TIMEOUT_SECONDS=1 HERD_STALL_WARNING_SECONDS=0.5|"
    "initretry|tests/mpi/mpi_initretry||"
    "workload|tests/mpi/mpi_workload|HERD_CHUNK_BYTES=4194304|$here/../data/resnet50.txt"
    "demo|examples/herd_demo||200 5"
)
want=("$@")

work=$(mktemp -d /tmp/herd-cluster.XXXXXX)
cleanup() {
    cluster_down
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hosts=${CLUSTER_HOSTS:-3}
slots=${CLUSTER_SLOTS:-1}
np=$((hosts * slots))
cluster_up "$hosts" || exit 1
cluster_hostfile "$work/hosts" "$slots"

# test_allreduce.c's "identity" test checks herd_local_rank() == rank and herd_local_size() ==
# size: true when every rank runs on one machine, false here, where each rank is alone on its
# host (local rank 0 of 1, which is right). Until that test asks MPI for the node's ranks, those
# two checks, and only those, are expected to fail here.
known_single_host_checks() {
    local log=$1 fails listed
    fails=$(sed -n "s/.*mpi suite '[^']*' on [0-9]* rank(s): \([0-9]*\) failure(s) in all.*/\1/p" \
        "$log" | head -1)
    listed=$(grep -c 'check failed:' "$log")
    [ -n "$fails" ] && [ "$fails" -gt 0 ] && [ "$listed" = "$fails" ] || return 1
    ! grep 'check failed:' "$log" |
        grep -v -e 'herd_local_rank() == mt_rank' -e 'herd_local_size() == mt_size' | grep -q .
}

failed=0
ran=0
for entry in "${suites[@]}"; do
    IFS='|' read -r name exe envs args <<<"$entry"
    if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx -- "$name"; then
        continue
    fi
    ran=$((ran + 1))
    if [ ! -x "$build/$exe" ]; then
        echo "FAIL  $name: $build/$exe is not built"
        failed=$((failed + 1))
        continue
    fi
    xs=()
    for e in $envs; do
        xs+=(-x "$e")
    done
    log="$work/$name.log"
    start=$(date +%s%N)
    # shellcheck disable=SC2086
    CLUSTER_TIMEOUT=150 cluster_mpirun "$work/hosts" -np "$np" "${xs[@]}" "$build/$exe" $args \
        >"$log" 2>&1
    rc=$?
    # With several ranks per host, the hierarchical allreduce must have been the one tested.
    if [ "$rc" = 0 ] && [ "$name" = allreduce_hier ] && [ "$slots" -gt 1 ] &&
        ! grep -q 'hierarchical allreduce across hosts' "$log"; then
        echo "      $name: the shared-memory plane did not start hierarchically"
        rc=1
    fi
    secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    if [ "$rc" = 0 ]; then
        echo "ok    $name (${secs} s) $(grep -m1 -e 'mpi suite' -e 'herd demo' "$log")"
    elif [[ "$name" == allreduce* ]] && known_single_host_checks "$log"; then
        echo "ok    $name (${secs} s): all passed but the single-host identity checks" \
            "(known, see README.md)"
    else
        [ "$rc" = 124 ] && echo "      $name: did not finish within 150 s"
        echo "FAIL  $name (exit $rc, ${secs} s); last lines:"
        tail -n 60 "$log" | sed 's/^/      /'
        failed=$((failed + 1))
    fi
done
if [ "$ran" = 0 ]; then
    echo "no suite matched: $*" >&2
    exit 2
fi
echo "cluster: $ran run(s) on $hosts hosts x $slots rank(s) over TCP, $failed failed"
[ "$failed" = 0 ]
