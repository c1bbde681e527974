#!/bin/sh
# nsexec.sh - the "remote shell" of the pretend cluster (see netns.sh): mpirun's rsh launcher
# (--mca plm_rsh_agent /path/to/nsexec.sh) calls it as an ssh stand-in,
#
#   nsexec.sh [ssh options...] HOST COMMAND...
#
# and it runs COMMAND in network namespace HOST, the way ssh would run it on machine HOST: one
# string handed to a shell. The orted it starts there may call it again (tree spawn) for other
# hosts. Options that OpenMPI may put before the host (ssh's -x, -n, -T, -q...) are ignored.
while [ $# -gt 0 ]; do
    case "$1" in
    -l | -p | -o | -i | -F) shift 2 ;;
    -*) shift ;;
    *) break ;;
    esac
done
if [ $# -lt 2 ]; then
    echo "nsexec.sh: usage: nsexec.sh HOST COMMAND..." >&2
    exit 255
fi
host=$1
shift
if ! ip netns list | awk '{print $1}' | grep -qx -- "$host"; then
    echo "nsexec.sh: no network namespace '$host' (is the pretend cluster up?)" >&2
    exit 255
fi
# A UTS namespace of its own gives the host its own host name: OpenMPI names its session
# directories (/tmp/ompi.HOSTNAME.UID/...) after it, and daemons of one job that share a name
# and a /tmp race each other creating and removing them.
# shellcheck disable=SC2016 # $1 and $2 belong to the inner shell
exec ip netns exec "$host" unshare --uts /bin/sh -c 'hostname "$1" && exec /bin/sh -c "$2"' \
    nsexec "$host" "$*"
