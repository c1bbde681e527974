"""herdrun's command line: the mpirun line it builds and its one-line errors.

Runs `python -m herd.run` from the checkout (HERD_LIBRARY points at the build's libherd) with
--dry-run, which prints the mpirun line instead of running it; then one real 2-rank job.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def herdrun(*args, env=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.path.join(ROOT, "python")
    for k in [k for k in e if k.startswith(("HERD_", "NCCL_")) and k != "HERD_LIBRARY"]:
        del e[k]
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "herd.run", *args], env=e, capture_output=True,
                          text=True, timeout=120)


def dry(*args, env=None):
    p = herdrun("--dry-run", *args, env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split()


def test_default_line():
    argv = dry("-np", "4", "python", "train.py", "--lr", "0.1")
    assert argv[:5] == ["mpirun", "-np", "4", "--bind-to", "none"]
    assert argv[-4:] == ["python", "train.py", "--lr", "0.1"]
    assert ("--allow-run-as-root" in argv) == (os.geteuid() == 0)


def test_forwards_herd_nccl_cuda_variables():
    argv = dry("-np", "2", "prog", env={"HERD_FUSION_THRESHOLD": "1M", "NCCL_DEBUG": "INFO",
                                        "CUDA_VISIBLE_DEVICES": "0,1", "UNRELATED": "x"})
    pairs = {argv[i + 1] for i, a in enumerate(argv) if a == "-x"}
    assert {"HERD_FUSION_THRESHOLD", "NCCL_DEBUG", "CUDA_VISIBLE_DEVICES", "PATH"} <= pairs
    assert "UNRELATED" not in pairs


def test_hosts_timeline_cores_and_extra_args(tmp_path):
    argv = dry("-np", "4", "-H", "node1:2,node2:2", "--timeline", "/tmp/t%r.json",
               "--cores-per-rank", "3", "--mpi-args", "--mca btl ^openib", "prog")
    s = " ".join(argv)
    assert "-H node1:2,node2:2" in s
    assert "--map-by slot:PE=3 --bind-to core" in s and "--bind-to none" not in s
    assert "-x HERD_TIMELINE" in s
    assert "--mca btl '^openib' prog" in s  # shlex-quoted, as a shell would need it
    hf = tmp_path / "hosts"
    hf.write_text("node1 slots=2\n")
    assert f"--hostfile {hf}" in " ".join(dry("-np", "2", "--hostfile", str(hf), "prog"))


@pytest.mark.parametrize("args, text", [
    (["prog"], "-np N is required"),
    (["-np", "2"], "no command to run"),
    (["-np", "0", "prog"], "-np must be 1 or more"),
    (["-np", "2", "-H", "a:2,,b", "prog"], "bad host ''"),
    (["-np", "2", "-H", "a:0", "prog"], "bad host 'a:0'"),
    (["-np", "2", "-H", "a b", "prog"], "bad host 'a b'"),
    (["-np", "5", "-H", "a:2,b:2", "prog"], "-np 5 but -H a:2,b:2 offers 4 slots"),
    (["-np", "2", "--hostfile", "/no/such/hostfile", "prog"], "no such file"),
    (["-np", "2", "-H", "a", "--hostfile", "f", "prog"], "not allowed with argument"),
    (["-np", "2", "--cores-per-rank", "1", "prog"], "--cores-per-rank must be 2 or more"),
    (["-np", "2", "--mpirun", "/no/such/mpirun", "prog"], "not found"),
    (["-np", "2", "--mpirun", "true", "prog"], "is not Open MPI's mpirun"),
])
def test_errors_are_one_line(args, text):
    p = herdrun(*args)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("herdrun: error: "), p.stderr
    assert text in lines[0], lines[0]


def test_no_mpirun_on_path():
    p = herdrun("-np", "2", "prog", env={"PATH": "/nonexistent"})
    assert p.returncode == 2
    assert "mpirun on PATH not found" in p.stderr and "openmpi-bin" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_real_job_verbose():
    code = ("import herd, numpy as np; herd.init(); "
            "y = herd.push_pull(np.full(5, herd.rank() + 1, np.int64), name='v'); "
            "assert (y == herd.size() * (herd.size() + 1) // 2).all(), y; "
            "print(f'rank{herd.rank()}ok', flush=True)")
    p = herdrun("-np", "2", "--verbose", sys.executable, "-c", code,
                env={"HERD_LOG_LEVEL": "warn"})
    assert p.returncode == 0, p.stdout + p.stderr
    # Ranks' output lines may interleave in mpirun's forwarding: look for each marker.
    assert "rank0ok" in p.stdout and "rank1ok" in p.stdout, p.stdout
    assert p.stderr.startswith("herdrun: mpirun -np 2 --bind-to none")
    assert "single core" not in p.stderr  # herdrun does not pin the coordinator's core
