# Sanitizer runtime settings for herd's tests, for scripts/test.sh or by hand:
#   source tests/sanitize/env.sh address   # then: cd build-asan && ctest -L '^(unit|mpi)$'
#   source tests/sanitize/env.sh thread    # then: cd build-tsan && ctest -L '^threads$'
# mpiexec hands its environment to the ranks it starts on this machine, so these reach every
# rank (a multi-node run would need `mpiexec -x ASAN_OPTIONS ...`).
#
# Address: leaks are checked at exit; OpenMPI's own (component tables, hwloc topology, PMIx and
# libevent state) are suppressed by library in lsan.supp. OpenMPI is built without frame
# pointers, so the fast unwinder stops at the first MPI frame and a stack would show no MPI
# library to match: fast_unwind_on_malloc=0 walks the real stack (slower, only at malloc).
# Thread: races and lock cycles inside the uninstrumented OpenMPI are suppressed in tsan.supp.
_herd_sanitize_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${1:-}" in
address)
    export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:abort_on_error=0"
    export LSAN_OPTIONS="suppressions=$_herd_sanitize_dir/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    ;;
thread)
    export TSAN_OPTIONS="suppressions=$_herd_sanitize_dir/tsan.supp:second_deadlock_stack=1"
    TSAN_OPTIONS+=":print_suppressions=0"
    ;;
*)
    echo "usage: source tests/sanitize/env.sh address|thread" >&2
    return 2 2>/dev/null || exit 2
    ;;
esac
unset _herd_sanitize_dir
