#!/usr/bin/env python3
"""Back-to-back latency from Python, as training scripts see it: each call waits for the one
before (loss averaging, metric reduction, barrier, broadcast_object).

    mpirun -np 2 python3 bench/py_latency.py                 # Open MPI's default binding
    mpirun -np 2 --bind-to none python3 bench/py_latency.py
    bash bench/binding.sh                                     # both, and herdrun, alternating

Per call, median over blocks [min - max] in microseconds, rank 0's clock, after a barrier per
block; each block is --block calls back to back. Calls interleave block by block, so that load
on the machine hits each alike. herd's event counters per op (herd.counters()) say where rounds
and thread hand-offs went. With torch importable, torch.distributed's all_reduce over gloo
(TCP loopback: set GLOO_SOCKET_IFNAME=lo) is measured in the same run as the peer a PyTorch
user would otherwise pick. Every result is checked; a wrong one exits 1.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

import herd


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=20)
    p.add_argument("--block", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="3 blocks of 50")
    p.add_argument("--no-gloo", action="store_true", help="skip torch.distributed over gloo")
    return p.parse_args()


def main():
    args = parse()
    if args.quick:
        args.blocks, args.block = 3, 50
    herd.init()
    rank, size = herd.rank(), herd.size()
    x = np.zeros(1, np.float32)
    want = float(sum(range(size)))
    wrong = []

    def push_pull():
        x[0] = rank
        herd.push_pull(x, name="lat.push_pull", out=x)
        if x[0] != want:
            wrong.append(("push_pull", float(x[0])))

    def push_pull_average_scalar():
        v = herd.push_pull(np.float32(rank), name="lat.scalar", op="average")
        if v != np.float32(want / size):
            wrong.append(("scalar average", float(v)))

    def barrier():
        herd.barrier()

    def broadcast_object():
        o = herd.broadcast_object({"step": 7} if rank == 0 else None, root=0)
        if o != {"step": 7}:
            wrong.append(("broadcast_object", o))

    calls = [("herd.push_pull(x, out=x), 1 float32", push_pull),
             ("herd.push_pull(np.float32, average)", push_pull_average_scalar),
             ("herd.barrier()", barrier),
             ("herd.broadcast_object(dict)", broadcast_object)]

    dist = None
    if not args.no_gloo and size > 1:
        try:
            import torch
            import torch.distributed as dist
        except ImportError:
            dist = None
    if dist is not None:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29577")
        dist.init_process_group("gloo", rank=rank, world_size=size)
        t = torch.zeros(1)

        def gloo_all_reduce():
            t[0] = rank
            dist.all_reduce(t)
            if t[0].item() != want:
                wrong.append(("gloo all_reduce", t[0].item()))

        calls.append(("torch.distributed.all_reduce (gloo)", gloo_all_reduce))

    names = herd.counter_names()
    times = {label: [] for label, _ in calls}
    counters = {label: dict.fromkeys(names, 0) for label, _ in calls}
    for blk in range(args.blocks + 1):  # block 0 warms up
        order = calls[blk % len(calls):] + calls[:blk % len(calls)]
        for label, fn in order:
            herd.barrier()
            before = herd.counters()
            t0 = time.perf_counter()
            for _ in range(args.block):
                fn()
            dt = (time.perf_counter() - t0) / args.block * 1e6
            after = herd.counters()
            if blk > 0:
                times[label].append(dt)
                for k in names:
                    counters[label][k] += after[k] - before[k]

    if rank == 0:
        print(f"== back-to-back latency from Python: {size} ranks, {args.blocks} blocks of "
              f"{args.block} calls, interleaved; us per call, median [min - max]; bind: "
              f"{os.environ.get('HERD_BENCH_BINDING', 'as launched')}")
        for label, _ in calls:
            v = times[label]
            print(f"   {label:40s} {statistics.median(v):9.1f} [{min(v):8.1f} - {max(v):8.1f}]")
        print("   herd counters per op (rank 0):")
        for label, _ in calls:
            c = counters[label]
            ops = c.get("ops", 0)
            if not ops:
                continue
            per = " ".join(f"{k} {c[k] / ops:.2f}" for k in names if k != "ops")
            print(f"   {label:40s} {per}")
    if dist is not None:
        dist.destroy_process_group()
    if wrong:
        print(f"py_latency: rank {rank}: WRONG RESULTS: {wrong[:3]}", file=sys.stderr)
        herd.shutdown()
        sys.exit(1)
    herd.shutdown()


if __name__ == "__main__":
    main()
