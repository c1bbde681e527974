#!/usr/bin/env bash
# fault.sh - a host dies in the middle of training: does every other rank find out, in time, and
# does the job end? fault_test (a loop of verified push_pull steps, finite waits) runs on a
# pretend cluster of 3 hosts (netns.sh), one rank each; once every rank is past its warm-up,
# host 2 suffers the fault, and the events every rank logs (FAULT_DIR/events.RANK, with
# millisecond wall-clock times: all "hosts" share this machine's clock) are checked against
# bounds computed from the settings below.
#
#   fault.sh SCENARIO FAULT_TEST_EXECUTABLE      (root; exits 77 when namespaces are unavailable)
#
# Scenarios (host 2 runs rank 2):
#   none           no fault: 100 steps, every rank finishes cleanly (the control run)
#   kill           rank 2 gets SIGKILL; OpenMPI's defaults: mpirun ends the job itself
#   kill_recovery  rank 2 gets SIGKILL under mpirun --enable-recovery: the job is not killed,
#                  so the survivors must find out through herd's own timeouts
#   cut            host 2's cable is pulled (its switch port goes down) and stays out until
#                  every rank has reported and exited, then is put back so mpirun can end
#   cut_tcp        the same, with net.ipv4.tcp_retries2=5 in the cluster's namespaces: the cable
#                  stays out and mpirun must end by itself
#
# Bounds, from FAULT_WAIT_MS=W (each wait's timeout), FAULT_STEP_MS=P (compute time between
# steps), HERD_SHUTDOWN_TIMEOUT_SECONDS=S and a scheduling slack L (CLUSTER_SLACK_MS, default
# 2000: this machine's cores are shared with other builds and tests):
#   herd's error   detect <= fault + W + P + L       (HERD_ERR_TIMEOUT from herd_wait_handle)
#   herd_shutdown  S - 0.1 s <= shutdown - detect <= S + L   (HERD_ERR_TIMEOUT: a peer is gone)
#   process exit   exit <= shutdown + L
#   the job        see each scenario's check below.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/netns.sh"

if [ $# -ne 2 ]; then
    echo "usage: $0 none|kill|kill_recovery|cut|cut_tcp FAULT_TEST_EXECUTABLE" >&2
    exit 2
fi
scenario=$1
exe=$2
case "$scenario" in
none | kill | kill_recovery | cut | cut_tcp) ;;
*)
    echo "fault.sh: unknown scenario '$scenario'" >&2
    exit 2
    ;;
esac
[ -x "$exe" ] || {
    echo "fault.sh: $exe is not an executable" >&2
    exit 2
}
cluster_require

W=${FAULT_WAIT_MS:-2000}
P=${FAULT_STEP_MS:-20}
S=${HERD_SHUTDOWN_TIMEOUT_SECONDS:-3}
L=${CLUSTER_SLACK_MS:-2000}
S_MS=$((S * 1000))
VICTIM=2
LIMIT=120 # seconds mpirun may run in all (then SIGTERM, SIGKILL 10 s later)

work=$(mktemp -d /tmp/herd-fault.XXXXXX)
mp=
cleanup() {
    if [ -n "$mp" ] && kill -0 "$mp" 2>/dev/null; then
        kill -TERM "$mp" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$mp" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$mp" 2>/dev/null
    fi
    cluster_down
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s%3N; }
failures=0
check() { # check WHAT RESULTS DETAIL: passes when RESULTS is all 1s (see ok_if)
    if [[ "$2" =~ ^1+$ ]]; then
        echo "  ok    $1 ($3)"
    else
        echo "  FAIL  $1 ($3)"
        failures=$((failures + 1))
    fi
}
# ev RANK WHAT: the time of RANK's first WHAT event, or nothing.
ev() { awk -v w="$2" '$2 == w { print $1; exit }' "$work/events.$1" 2>/dev/null; }
# evline RANK WHAT: that event's whole text.
evline() { awk -v w="$2" '$2 == w { print; exit }' "$work/events.$1" 2>/dev/null; }
# ok_if CMD...: prints 1 when CMD succeeds, else 0.
ok_if() { "$@" && echo 1 || echo 0; }
# within T BASE MAX: T and BASE are set and BASE <= T <= BASE + MAX.
within() { [ -n "$1" ] && [ -n "$2" ] && [ "$1" -ge "$2" ] && [ $(($1 - $2)) -le "$3" ]; }
ms() { [ -n "$1" ] && echo "+$(($1 - T0)) ms" || echo "never"; }
mpirun_alive() { kill -0 "$mp" 2>/dev/null; }
# wait_mpirun DEADLINE_MS: waits for mpirun to end, at most until DEADLINE (a wall-clock time).
mpirun_rc=
mpirun_end=
wait_mpirun() {
    while mpirun_alive && [ "$(now)" -lt "$1" ]; do
        sleep 0.05
    done
    if ! mpirun_alive; then
        mpirun_end=${mpirun_end:-$(now)}
        wait "$mp"
        mpirun_rc=$?
    fi
}

# Checks that rank $1 reported herd's error in time, shut herd down within its bound and left.
check_reports() {
    local r=$1 d s x
    d=$(ev "$r" detect)
    s=$(ev "$r" shutdown)
    x=$(ev "$r" exit)
    check "rank $r: herd error within W+P+L = $((W + P + L)) ms of the fault" \
        "$(ok_if within "$d" "$T0" $((W + P + L)))" \
        "$(ms "$d")"
    check "rank $r: the error is HERD_ERR_TIMEOUT" \
        "$(evline "$r" detect | grep -q HERD_ERR_TIMEOUT && echo 1 || echo 0)" \
        "$(evline "$r" detect | cut -d' ' -f3- | cut -c1-110)"
    check "rank $r: herd_shutdown gives up (HERD_ERR_TIMEOUT) after S = $S_MS ms (+L)" \
        "$(ok_if within "$s" $((${d:-0} + S_MS - 100)) $((L + 100)))$(ok_if grep -q \
            HERD_ERR_TIMEOUT <<<"$(evline "$r" shutdown)")" \
        "$(ms "$s"), $((${s:-0} - ${d:-0})) ms after the error"
    check "rank $r: the process leaves right after" \
        "$(ok_if within "$x" "$s" "$L")" "$(ms "$x")"
}

cluster_up 3 || exit 1
cluster_hostfile "$work/hosts"
extra=()
steps=0
case "$scenario" in
none) steps=100 ;;
kill_recovery) extra=(--enable-recovery) ;;
cut_tcp) cluster_sysctl net.ipv4.tcp_retries2=5 || exit 1 ;;
esac

echo "fault.sh $scenario: 3 hosts, W=$W ms, P=$P ms, S=$S s, L=$L ms"
CLUSTER_TIMEOUT=$LIMIT cluster_mpirun "$work/hosts" -np 3 "${extra[@]}" \
    -x FAULT_DIR="$work" -x FAULT_WAIT_MS="$W" -x FAULT_STEP_MS="$P" -x FAULT_STEPS="$steps" \
    -x FAULT_LIMIT_SECONDS=60 -x HERD_SHUTDOWN_TIMEOUT_SECONDS="$S" \
    ${FAULT_EXIT:+-x FAULT_EXIT="$FAULT_EXIT"} "$exe" \
    >"$work/mpirun.log" 2>&1 &
mp=$!

# Every rank past its warm-up.
deadline=$(($(now) + 60000))
until [ -n "$(ev 0 ready)" ] && [ -n "$(ev 1 ready)" ] && [ -n "$(ev 2 ready)" ]; do
    if ! mpirun_alive || [ "$(now)" -gt "$deadline" ]; then
        echo "FAIL: the job did not get going (no 'ready' from every rank within 60 s)"
        tail -n 40 "$work/mpirun.log"
        exit 1
    fi
    sleep 0.05
done
sleep 0.3

T0=$(now)
case "$scenario" in
none) ;;
kill*)
    pid=$(evline "$VICTIM" ready | awk '{print $4}')
    kill -KILL "$pid"
    echo "  rank $VICTIM (pid $pid) killed"
    ;;
cut*)
    cluster_cut "$VICTIM"
    echo "  host $VICTIM's cable pulled"
    ;;
esac

mended=
still_running=
herd_path=$((W + P + S_MS + 2 * L)) # fault -> every rank has left, by herd's own timeouts
case "$scenario" in
none)
    wait_mpirun $((T0 + 60000))
    for r in 0 1 2; do
        check "rank $r: 100 steps, every element right, clean shutdown" \
            "$([ -n "$(ev "$r" "done")" ] && [ -z "$(ev "$r" detect)" ] && echo 1 || echo 0)" \
            "$(evline "$r" "done" | cut -d' ' -f2-)"
    done
    check "mpirun exits 0" "$([ "$mpirun_rc" = 0 ] && echo 1 || echo 0)" "exit ${mpirun_rc:-?}"
    ;;
kill)
    wait_mpirun $((T0 + herd_path + 10000))
    for r in 0 1; do
        end=$(ev "$r" signal)
        how="SIGTERM from OpenMPI"
        if [ -z "$end" ]; then
            end=$(ev "$r" exit)
            how="herd's error, then exit"
        fi
        check "rank $r: gone within $herd_path ms of the kill" "$(ok_if within "$end" "$T0" \
            "$herd_path")" "$(ms "$end"): $how"
    done
    check "mpirun ends the job within $((herd_path + 5000)) ms" \
        "$(ok_if within "$mpirun_end" "$T0" $((herd_path + 5000)))" "$(ms "$mpirun_end")"
    check "mpirun reports the failure" "$([ -n "$mpirun_rc" ] && [ "$mpirun_rc" != 0 ] &&
        echo 1 || echo 0)" "exit ${mpirun_rc:-?}"
    ;;
kill_recovery)
    wait_mpirun $((T0 + herd_path + 15000))
    check_reports 0
    check_reports 1
    check "mpirun ends within $((herd_path + 10000)) ms" \
        "$(ok_if within "$mpirun_end" "$T0" $((herd_path + 10000)))" \
        "$(ms "$mpirun_end"), exit ${mpirun_rc:-?}, not checked: see README.md"
    ;;
cut | cut_tcp)
    # The cut-off rank has no peer either: all three must report.
    until { [ -n "$(ev 0 exit)" ] && [ -n "$(ev 1 exit)" ] && [ -n "$(ev 2 exit)" ]; } ||
        [ "$(now)" -gt $((T0 + herd_path + 5000)) ]; do
        sleep 0.05
    done
    for r in 0 1 2; do
        check_reports "$r"
    done
    if [ "$scenario" = cut ]; then
        # mpirun cannot tell host 2's daemon to end, nor hear from it, until TCP gives up on
        # the connection (net.ipv4.tcp_retries2=15: about 15 minutes). Give it 5 s, then put
        # the cable back, as an operator would.
        sleep 5
        mpirun_alive && still_running=yes || still_running=no
        echo "  all ranks left; 5 s later mpirun still running: $still_running"
        cluster_mend "$VICTIM"
        mended=$(now)
        echo "  host $VICTIM's cable back at $(ms "$mended")"
        wait_mpirun $((mended + 60000))
        check "mpirun ends within 60 s of the repair" \
            "$(ok_if within "$mpirun_end" "$mended" 60000)" \
            "$(ms "$mpirun_end"), $((${mpirun_end:-mended} - mended)) ms after the repair"
    else
        # tcp_retries2=5: an unanswered connection fails after about 12.6 s of retries.
        wait_mpirun $((T0 + herd_path + 30000))
        check "mpirun ends by itself within $((herd_path + 25000)) ms, cable still out" \
            "$(ok_if within "$mpirun_end" "$T0" $((herd_path + 25000)))" "$(ms "$mpirun_end")"
    fi
    check "mpirun reports the failure" "$([ -n "$mpirun_rc" ] && [ "$mpirun_rc" != 0 ] &&
        echo 1 || echo 0)" "exit ${mpirun_rc:-?}"
    ;;
esac

# One line per rank with every time, for the README's table and for a human reading ctest -V.
echo "  summary ($scenario, times after the fault):"
for r in 0 1 2; do
    line="    rank $r:"
    for what in detect shutdown exit signal "done"; do
        t=$(ev "$r" "$what")
        [ -n "$t" ] && line+=" $what $(ms "$t")"
    done
    [ "$r" = "$VICTIM" ] && [ "$scenario" != none ] && line+=" (the victim)"
    echo "$line"
done
echo "    mpirun: ended $(ms "$mpirun_end"), exit ${mpirun_rc:-still running}"
if [ "$failures" -gt 0 ]; then
    echo "fault.sh $scenario: $failures check(s) failed; mpirun's output:"
    grep -v '^fault_test rank' "$work/mpirun.log" | tail -n 40 | sed 's/^/    /'
    exit 1
fi
echo "fault.sh $scenario: passed"
