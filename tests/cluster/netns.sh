#!/usr/bin/env bash
# netns.sh - a pretend cluster on one machine: N "hosts" that are network namespaces, cabled to
# a switch namespace by veth pairs.
#
#   <prefix>-sw    the switch and the head node: bridge br0 with 10.77.0.1/24; mpirun runs here
#   <prefix>-hI    host I (0..N-1): eth0 with 10.77.0.(10+I)/24, its cable is port pI on br0
#
# Nothing leaves these namespaces: 10.77.0.0/24 exists only on br0, and no namespace has a route
# or an interface to anywhere else. Every namespace gets /etc/netns/<ns>/hosts (which
# `ip netns exec` mounts over /etc/hosts), so the host names resolve to their addresses.
#
# As a command (manual use; always `down` afterwards):
#   netns.sh up PREFIX N | down PREFIX | cut PREFIX I | mend PREFIX I | list
# As a library: `source netns.sh`, then cluster_up / cluster_down / cluster_cut / cluster_mend.
# Scripts that source it set `trap cluster_down EXIT` before cluster_up, so a failure anywhere
# still removes everything; cluster_down is idempotent and also kills what still runs inside.
#
# Prefixes made by the test scripts are "hc<pid of the script>": cluster_up first removes the
# namespaces of such scripts that died without cleaning up (their pid no longer runs), and never
# touches a running script's.

CLUSTER_NET=10.77.0
CLUSTER_CIDR=10.77.0.0/24
CLUSTER_PREFIX=${CLUSTER_PREFIX:-hc$$}
CLUSTER_N=0
CLUSTER_MPIRUN=${CLUSTER_MPIRUN:-mpirun} # Open MPI's; the tests pass CMake's MPIEXEC_EXECUTABLE
CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The namespace of host I, and its address.
cluster_host() { echo "${CLUSTER_PREFIX}-h$1"; }
cluster_addr() { echo "${CLUSTER_NET}.$((10 + $1))"; }
cluster_switch() { echo "${CLUSTER_PREFIX}-sw"; }

# Exits 77 (ctest's "skipped") unless this process can make network namespaces.
cluster_require() {
    if [ "$EUID" != 0 ]; then
        echo "SKIP: the cluster tests need root (network namespaces)" >&2
        exit 77
    fi
    if ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
        echo "SKIP: 'ip netns' (iproute2) is not available" >&2
        exit 77
    fi
    if ! "$CLUSTER_MPIRUN" --version 2>/dev/null | grep -qiE 'Open MPI|OpenRTE'; then
        echo "SKIP: '$CLUSTER_MPIRUN' is not Open MPI's (the launch uses its rsh agent)" >&2
        exit 77
    fi
    if ! unshare --uts true 2>/dev/null; then
        echo "SKIP: 'unshare --uts' is not permitted here" >&2
        exit 77
    fi
    local probe="hcprobe$$"
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "SKIP: cannot create a network namespace here" >&2
        exit 77
    fi
    local ok=1
    ip -n "$probe" link add vprobe0 type veth peer name vprobe1 2>/dev/null || ok=0
    ip -n "$probe" link add brprobe type bridge 2>/dev/null || ok=0
    ip netns del "$probe"
    if [ "$ok" = 0 ]; then
        echo "SKIP: veth pairs or bridges cannot be created here" >&2
        exit 77
    fi
}

# Namespaces whose name starts with "$1-".
_cluster_list() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$1-(sw|h[0-9]+)$" || true
}

# Removes every namespace of prefix $1: kills what runs inside, deletes it, drops its hosts file.
_cluster_remove() {
    local prefix=$1 ns pids
    for ns in $(_cluster_list "$prefix"); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    # Hosts files of namespaces that were never created (a setup that failed half-way).
    rm -rf /etc/netns/"$prefix"-sw /etc/netns/"$prefix"-h[0-9]*
    rmdir /etc/netns 2>/dev/null || true
}

# Whether process $1 runs (a zombie does not: kill -0 would say it does).
_cluster_alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Removes namespaces left behind by test scripts that were killed before their EXIT trap ran.
_cluster_reap_stale() {
    local p pid
    for p in $(ip netns list 2>/dev/null | awk '{print $1}' |
        sed -n 's/^\(hc[0-9][0-9]*\)-.*/\1/p' | sort -u); do
        pid=${p#hc}
        [ "$p" = "$CLUSTER_PREFIX" ] && continue
        if ! _cluster_alive "$pid"; then
            echo "netns: removing namespaces $p-* left by a run that died (pid $pid)" >&2
            _cluster_remove "$p"
        fi
    done
}

# cluster_up N: the switch namespace and N hosts; prints nothing, fails loudly.
cluster_up() {
    local n=$1 i ns sw hosts
    CLUSTER_N=$n
    _cluster_reap_stale
    _cluster_remove "$CLUSTER_PREFIX"
    sw=$(cluster_switch)
    ip netns add "$sw" || return 1
    ip -n "$sw" link set lo up || return 1
    ip -n "$sw" link add br0 type bridge || return 1
    # Forward at once: no STP listening/learning delay on a fresh bridge port.
    ip -n "$sw" link set br0 type bridge stp_state 0 forward_delay 0 || return 1
    ip -n "$sw" addr add "${CLUSTER_NET}.1/24" dev br0 || return 1
    ip -n "$sw" link set br0 up || return 1
    hosts="127.0.0.1 localhost"$'\n'"${CLUSTER_NET}.1 $sw"$'\n'
    for ((i = 0; i < n; i++)); do
        hosts+="$(cluster_addr "$i") $(cluster_host "$i")"$'\n'
    done
    for ((i = 0; i < n; i++)); do
        ns=$(cluster_host "$i")
        ip netns add "$ns" || return 1
        ip -n "$ns" link set lo up || return 1
        ip -n "$sw" link add "p$i" type veth peer name eth0 netns "$ns" || return 1
        ip -n "$sw" link set "p$i" master br0 || return 1
        ip -n "$sw" link set "p$i" up || return 1
        ip -n "$ns" addr add "$(cluster_addr "$i")/24" dev eth0 || return 1
        ip -n "$ns" link set eth0 up || return 1
    done
    for ns in "$sw" $(for ((i = 0; i < n; i++)); do cluster_host "$i"; done); do
        mkdir -p "/etc/netns/$ns" || return 1
        printf '%s' "$hosts" >"/etc/netns/$ns/hosts" || return 1
    done
    # Every cable must carry before anything runs on top: both ends up with carrier, and the
    # bridge port forwarding.
    for ((i = 0; i < n; i++)); do
        local tries=0
        until ip -n "$(cluster_host "$i")" link show eth0 | grep -q 'state UP' &&
            ip -n "$sw" link show "p$i" | grep -q 'state UP' &&
            bridge -n "$sw" link show dev "p$i" | grep -q 'state forwarding'; do
            tries=$((tries + 1))
            if [ "$tries" -ge 50 ]; then
                echo "netns: the cable of host $i does not come up" >&2
                return 1
            fi
            sleep 0.1
        done
    done
}

# cluster_hostfile FILE [SLOTS]: SLOTS slots (default 1) on each host.
cluster_hostfile() {
    local i
    : >"$1"
    for ((i = 0; i < CLUSTER_N; i++)); do
        echo "$(cluster_host "$i") slots=${2:-1}" >>"$1"
    done
}

# cluster_mpirun HOSTFILE MPIRUN_ARGS...: mpirun on the head node (the switch namespace, with a
# host name of its own), launching its daemons on the hosts through nsexec.sh, MPI over TCP on
# 10.77.0.0/24 only. mpi_yield_when_idle: every host has one slot and one rank, so OpenMPI
# thinks no core is shared and spins in every wait; here all hosts share this machine's cores,
# and spinning ranks starve each other (the shutdown suite took 125 s instead of 2).
# With CLUSTER_TIMEOUT=S, mpirun gets SIGTERM after S seconds (and SIGKILL 10 s later): it
# execs all the way down, so the signal reaches mpirun itself and it takes its job down.
cluster_mpirun() {
    local hostfile=$1 sw
    shift
    sw=$(cluster_switch)
    # shellcheck disable=SC2016 # $0 and $@ belong to the inner shell
    ${CLUSTER_TIMEOUT:+timeout -k 10 "$CLUSTER_TIMEOUT"} ip netns exec "$sw" \
        unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "$sw" \
        "$CLUSTER_MPIRUN" --allow-run-as-root --oversubscribe --bind-to none --hostfile "$hostfile" \
        --mca plm_rsh_agent "$CLUSTER_DIR/nsexec.sh" \
        --mca pml ob1 --mca btl tcp,self \
        --mca btl_tcp_if_include "$CLUSTER_CIDR" --mca oob_tcp_if_include "$CLUSTER_CIDR" \
        --mca mpi_yield_when_idle 1 "$@"
}

# cluster_sysctl KEY=VALUE: sets a per-namespace sysctl in the switch and every host (never on
# this machine itself).
cluster_sysctl() {
    local i
    ip netns exec "$(cluster_switch)" sysctl -q -w "$1" || return 1
    for ((i = 0; i < CLUSTER_N; i++)); do
        ip netns exec "$(cluster_host "$i")" sysctl -q -w "$1" || return 1
    done
}

cluster_down() {
    _cluster_remove "$CLUSTER_PREFIX"
}

# cluster_cut I: unplugs host I's cable at the switch (its eth0 stays up, with no carrier):
# packets to and from it are dropped, and nobody is told, as when a cable or a switch port dies.
cluster_cut() { ip -n "$(cluster_switch)" link set "p$1" down; }
cluster_mend() { ip -n "$(cluster_switch)" link set "p$1" up; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cmd=${1:-}
    case "$cmd" in
    up)
        cluster_require
        CLUSTER_PREFIX=$2
        cluster_up "$3"
        echo "up: $(cluster_switch) (10.77.0.1) and $3 hosts:" \
            "$(_cluster_list "$2" | grep -v -- -sw | sort | tr '\n' ' ')"
        ;;
    down) CLUSTER_PREFIX=$2 cluster_down ;;
    cut) CLUSTER_PREFIX=$2 cluster_cut "$3" ;;
    mend) CLUSTER_PREFIX=$2 cluster_mend "$3" ;;
    list) ip netns list ;;
    *)
        echo "usage: $0 up PREFIX N | down PREFIX | cut PREFIX I | mend PREFIX I | list" >&2
        exit 2
        ;;
    esac
fi
