"""herdrun: launch a herd job with Open MPI's mpirun, with the binding herd needs.

    herdrun -np 4 [-H host1:2,host2:2 | --hostfile F] [--timeline PATH] [--verbose] \\
        python train.py [args...]

Open MPI binds every rank to one core by default (with 2 ranks or fewer per node), and herd's
coordinator thread would then share that core with the training loop. herdrun passes
`--bind-to none` instead (what Horovod's docs recommend), or, with --cores-per-rank K, binds each
rank to K cores (`--map-by slot:PE=K --bind-to core`) so the thread has room beside the caller.
It forwards HERD_*, NCCL_*, CUDA_VISIBLE_DEVICES and the variables that find Python and its
libraries (PATH, PYTHONPATH, LD_LIBRARY_PATH, VIRTUAL_ENV) to every rank with `-x`, adds
--allow-run-as-root only when run as root, and then replaces itself with mpirun (signals and
the exit status are mpirun's). Mistakes (no mpirun, a bad host list) are one line on stderr and
exit status 2.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys

FORWARD_PREFIXES = ("HERD_", "NCCL_")
FORWARD_NAMES = ("CUDA_VISIBLE_DEVICES", "PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV")
_HOST = re.compile(r"^[A-Za-z0-9_.\-]+(?::([0-9]+))?$")


class UsageError(Exception):
    """A mistake in herdrun's arguments or surroundings: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser():
    p = _Parser(
        prog="herdrun",
        usage="herdrun -np N [-H HOSTS | --hostfile F] [--timeline PATH] [--verbose] "
        "command [args...]",
        description="Run a herd job under Open MPI's mpirun, without pinning herd's coordinator "
        "thread onto the rank's core, with HERD_*/NCCL_*/CUDA_VISIBLE_DEVICES forwarded.",
    )
    p.add_argument("-np", "-n", dest="np", type=int, metavar="N",
                   help="number of ranks")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-H", "--hosts", metavar="HOSTS",
                   help="host1:slots,host2:slots,... (slots optional)")
    g.add_argument("--hostfile", metavar="FILE", help="an Open MPI hostfile")
    p.add_argument("--timeline", metavar="PATH",
                   help="write a Chrome trace (sets HERD_TIMELINE; %%r in PATH = every rank)")
    p.add_argument("--cores-per-rank", type=int, metavar="K",
                   help="bind each rank to K >= 2 cores instead of not binding at all")
    p.add_argument("--mpi-args", default="", metavar="'ARGS'",
                   help="more mpirun arguments, one shell-quoted string")
    p.add_argument("--mpirun", metavar="PATH", help="the mpirun to use (default: mpirun on PATH)")
    p.add_argument("--verbose", action="store_true", help="print the mpirun line before running")
    p.add_argument("--dry-run", action="store_true",
                   help="print the mpirun line on stdout and exit without running it")
    p.add_argument("--check-build", action="store_true",
                   help="print herd's build summary (python -m herd --version) and exit")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments")
    return p


def _check_hosts(hosts, np_):
    total, all_counted = 0, True
    for item in hosts.split(","):
        m = _HOST.match(item)
        if not item or not m or (m.group(1) is not None and int(m.group(1)) < 1):
            raise UsageError(f"bad host {item!r} in -H {hosts!r}: expected host or host:slots "
                             "(slots >= 1), comma separated, e.g. -H node1:2,node2:2")
        if m.group(1) is None:
            all_counted = False
        else:
            total += int(m.group(1))
    if all_counted and np_ > total:
        raise UsageError(f"-np {np_} but -H {hosts} offers {total} slots")


def _find_mpirun(path):
    exe = shutil.which(path) if path else shutil.which("mpirun")
    if exe is None:
        where = f"--mpirun {path}" if path else "mpirun on PATH"
        raise UsageError(f"{where} not found: install Open MPI (Debian: apt-get install "
                         "openmpi-bin) or name it with --mpirun PATH")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        text = out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError(f"cannot run {exe} --version: {e}") from None
    if not re.search(r"Open MPI|OpenRTE|Open RTE", text):
        first = text.strip().splitlines()[0] if text.strip() else "no output"
        raise UsageError(f"{exe} is not Open MPI's mpirun ({first}); herdrun drives Open MPI "
                         "only: use that MPI's own launcher and its no-binding option")
    # Invoked by an absolute path, Open MPI acts as if given --prefix and puts its bin/ first in
    # every rank's PATH (/usr/bin: the system python3 instead of the user's). By name it does not.
    return path if path else "mpirun"


def build_command(args, environ, euid, mpirun):
    """The mpirun argv and the environment for it. Raises UsageError."""
    if args.np is None:
        raise UsageError("-np N is required: the number of ranks")
    if args.np < 1:
        raise UsageError(f"-np must be 1 or more, not {args.np}")
    if not args.command:
        raise UsageError("no command to run: herdrun -np N python train.py")
    cmd = list(args.command)
    if cmd[0] == "--":
        cmd = cmd[1:]
        if not cmd:
            raise UsageError("no command to run after --")
    env = dict(environ)
    argv = [mpirun, "-np", str(args.np)]
    if args.cores_per_rank is not None:
        if args.cores_per_rank < 2:
            raise UsageError("--cores-per-rank must be 2 or more (one core for the training "
                             "loop, room for herd's coordinator thread)")
        argv += ["--map-by", f"slot:PE={args.cores_per_rank}", "--bind-to", "core"]
    else:
        argv += ["--bind-to", "none"]
    if args.hosts is not None:
        _check_hosts(args.hosts, args.np)
        argv += ["-H", args.hosts]
    if args.hostfile is not None:
        if not os.path.isfile(args.hostfile):
            raise UsageError(f"--hostfile {args.hostfile}: no such file")
        argv += ["--hostfile", args.hostfile]
    if args.timeline is not None:
        if not args.timeline:
            raise UsageError("--timeline needs a path")
        env["HERD_TIMELINE"] = args.timeline
    if euid == 0:
        argv.append("--allow-run-as-root")
    for name in sorted(env):
        if name.startswith(FORWARD_PREFIXES) or name in FORWARD_NAMES:
            argv += ["-x", name]
    try:
        argv += shlex.split(args.mpi_args)
    except ValueError as e:
        raise UsageError(f"--mpi-args {args.mpi_args!r}: {e}") from None
    return argv + cmd, env


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
        if args.check_build:
            from ._build_info import build_info, format_build_info

            print(format_build_info(build_info()))
            return 0
        mpirun = _find_mpirun(args.mpirun)
        cmd, env = build_command(args, os.environ, os.geteuid(), mpirun)
    except UsageError as e:
        print(f"herdrun: error: {e} (herdrun --help)", file=sys.stderr)
        return 2
    line = shlex.join(cmd)
    if args.dry_run:
        print(line)
        return 0
    if args.verbose:
        print(f"herdrun: {line}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
