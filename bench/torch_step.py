#!/usr/bin/env python3
"""herd.torch against torch DDP over gloo and against no exchange at all: whole training steps
and the gradient exchange alone, on the same model and data, interleaved, medians.

    mpirun -np 2 --bind-to none python3 bench/torch_step.py            # a few minutes
    mpirun -np 2 python3 bench/torch_step.py --rounds 5 --quick         # smoke run

Both libraries live in one process per rank: herd over MPI (shared memory), DDP over gloo
(TCP loopback; set GLOO_SOCKET_IFNAME=lo). The model is built here (no torchvision): a
ResNet-ish CNN (residual blocks of two 3x3 convolutions, 64-128-256 channels) or, with
--model transformer, a small pre-norm transformer encoder. Every rank uses the same per-rank
batch each step. Each round runs every variant once, in a rotating order, after a barrier:

  step.local        forward + backward + SGD step, no exchange (the floor)
  step.herd         herd.torch DistributedOptimizer, gradient bucket views (the default)
  step.herd_copy    herd.torch DistributedOptimizer, one allreduce per gradient (no views)
  step.ddp          DistributedDataParallel(gloo), default buckets (25 MiB), + SGD step
  step.ddp_view     the same with gradient_as_bucket_view=True
  exchange.herd     every gradient averaged in place by herd.torch (bucket views), nothing else
  exchange.gloo     the same buffers by torch.distributed.all_reduce over gloo (25 MiB and
                    4 MiB buckets; the faster of the two is reported)

Rank 0 prints one line per variant: median, quartiles (ms) and the ratios the targets name. A
time is the slower rank's. At the end every variant's model must equal the local one (all ranks
feed the same batch), or the program exits 1.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch  # before herd (docs/torch.md, import order)
import torch.distributed as dist
import torch.nn.functional as F

try:
    import herd.torch as hvd
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import herd.torch as hvd
import herd  # noqa: E402 - after herd.torch, which set up the import path; for herd.counters()


class Block(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = torch.nn.BatchNorm2d(cout)
        self.c2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = torch.nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class ResNetish(torch.nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False),
                                        torch.nn.BatchNorm2d(64), torch.nn.ReLU())
        self.layers = torch.nn.Sequential(Block(64, 64, 1), Block(64, 64, 1),
                                          Block(64, 128, 2), Block(128, 128, 1),
                                          Block(128, 256, 2), Block(256, 256, 1))
        self.fc = torch.nn.Linear(256, classes)

    def forward(self, x):
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


class Transformer(torch.nn.Module):
    def __init__(self, vocab=8000, d=256, layers=4, classes=10):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        layer = torch.nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True,
                                                 norm_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = torch.nn.Linear(d, classes)

    def forward(self, x):
        return self.fc(self.enc(self.emb(x)).mean(1))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["resnet", "transformer"], default="resnet")
    p.add_argument("--batch", type=int, default=8, help="per-rank batch")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny inputs: a smoke run")
    p.add_argument("--port", type=int, default=29517)
    p.add_argument("--only", default=None, help="time only the variants starting with this")
    return p.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(1)
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=size)

    torch.manual_seed(0)
    if args.model == "resnet":
        side = 8 if args.quick else 16
        make = ResNetish
        x = torch.randn(args.batch, 3, side, side)
    else:
        make = Transformer
        x = torch.randint(0, 8000, (args.batch, 16 if args.quick else 64))
    y = torch.randint(0, 10, (args.batch,))

    def fresh():
        torch.manual_seed(0)
        return make()

    nparams = sum(p.numel() for p in fresh().parameters())

    # The variants, each with its own model copy and optimizer.
    m_local = fresh()
    o_local = torch.optim.SGD(m_local.parameters(), lr=1e-3)
    m_herd = fresh()
    o_herd = hvd.DistributedOptimizer(torch.optim.SGD(m_herd.parameters(), lr=1e-3),
                                      named_parameters=[("v." + n, p) for n, p in
                                                        m_herd.named_parameters()])
    m_copy = fresh()
    o_copy = hvd.DistributedOptimizer(torch.optim.SGD(m_copy.parameters(), lr=1e-3),
                                      named_parameters=[("c." + n, p) for n, p in
                                                        m_copy.named_parameters()],
                                      gradient_as_bucket_view=False)
    m_ddp = torch.nn.parallel.DistributedDataParallel(fresh())
    o_ddp = torch.optim.SGD(m_ddp.parameters(), lr=1e-3)
    m_ddpv = torch.nn.parallel.DistributedDataParallel(fresh(), gradient_as_bucket_view=True)
    o_ddpv = torch.optim.SGD(m_ddpv.parameters(), lr=1e-3)

    def step(model, opt):
        def run():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return run

    # Exchange alone: herd's bucket buffers (gradients already in them), and the same bytes as
    # gloo buckets of DDP's default size and of herd's.
    flats = [b.flat for b in o_herd._buckets]

    def gloo_buckets(cap):
        out, cur, n = [], [], 0
        for p in m_local.parameters():
            cur.append(p.numel())
            n += p.numel() * 4
            if n >= cap:
                out.append(torch.randn(sum(cur)))
                cur, n = [], 0
        if cur:
            out.append(torch.randn(sum(cur)))
        return out

    g25, g4 = gloo_buckets(25 << 20), gloo_buckets(4 << 20)
    names = [f"x.{i}" for i in range(len(flats))]

    def exchange_herd():
        hs = [hvd.allreduce_async_(f, name=n) for f, n in zip(flats, names)]
        for h in hs:
            h.wait()

    def exchange_gloo(bufs):
        def run():
            ws = [dist.all_reduce(b, async_op=True) for b in bufs]
            for w in ws:
                w.wait()
            for b in bufs:
                b.div_(size)
        return run

    variants = {
        "step.local": step(m_local, o_local),
        "step.herd": step(m_herd, o_herd),
        "step.herd_copy": step(m_copy, o_copy),
        "step.ddp": step(m_ddp, o_ddp),
        "step.ddp_view": step(m_ddpv, o_ddpv),
        "exchange.herd": exchange_herd,
        "exchange.gloo25": exchange_gloo(g25),
        "exchange.gloo4": exchange_gloo(g4),
    }
    keys = list(variants)
    for k in keys:  # one step of every model first: herd's buffers then hold gradients
        if k.startswith("step."):
            variants[k]()
    if args.only:
        keys = [k for k in keys if k.startswith(args.only)]
    times = {k: [] for k in keys}
    counted = {k: {} for k in keys}  # herd's event counters summed over the timed calls
    sync = torch.zeros(1)
    for r in range(args.warmup + args.rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]  # rotate: no variant always first
        for k in order:
            hvd.allreduce_(sync, name="bench.barrier")
            before = herd.counters()
            t0 = time.perf_counter()
            variants[k]()
            dt = time.perf_counter() - t0
            after = herd.counters()
            if r >= args.warmup:
                times[k].append(dt)
                for c in after:
                    counted[k][c] = counted[k].get(c, 0) + after[c] - before[c]
    # A variant's time is the slower rank's (the step ends when the last rank is done).
    med = {}
    for k in keys:
        t = torch.tensor(times[k], dtype=torch.float64)
        t = hvd.allreduce(t, op=hvd.Max, name=f"bench.t.{k}")
        q = statistics.quantiles(t.tolist(), n=4) if len(t) >= 2 else [t[0].item()] * 3
        med[k] = (statistics.median(t.tolist()) * 1e3, q[0] * 1e3, q[2] * 1e3)
    if rank == 0:
        binding = os.environ.get("OMPI_MCA_hwloc_base_binding_policy", "mpirun default")
        print(f"herd.torch bench: {args.model}, {nparams / 1e6:.2f} M params "
              f"({nparams * 4 / 2**20:.1f} MiB of float32 gradients in {len(flats)} herd "
              f"buckets), per-rank batch {args.batch}, {size} ranks, {args.rounds} rounds, "
              f"torch {torch.__version__}, binding: {binding}")
        for k in keys:
            m, lo, hi = med[k]
            print(f"  {k:18s} median {m:9.2f} ms   quartiles {lo:9.2f} .. {hi:9.2f}")
        if all(k in med for k in ("exchange.herd", "exchange.gloo25", "exchange.gloo4")):
            best_gloo = min(med["exchange.gloo25"][0], med["exchange.gloo4"][0])
            print(f"  ratio exchange herd / best gloo: {med['exchange.herd'][0] / best_gloo:.2f}"
                  f"   (target <= 0.5)")
        if all(k in med for k in ("step.herd", "step.ddp", "step.ddp_view", "step.local")):
            best_ddp = min(med["step.ddp"][0], med["step.ddp_view"][0])
            print(f"  ratio step herd / best DDP:      {med['step.herd'][0] / best_ddp:.2f}"
                  f"   (target <= 0.8)")
            print(f"  step herd over local:            "
                  f"{med['step.herd'][0] - med['step.local'][0]:.2f} ms;  DDP over local: "
                  f"{best_ddp - med['step.local'][0]:.2f} ms")
        print("  herd's counters per call (rank 0; herd.counters()):")
        for k in keys:
            c, n = counted[k], len(times[k])
            if n and c.get("ops"):
                print(f"  {k:18s} " + " ".join(f"{name} {v / n:.2f}" for name, v in c.items()
                                                if name != "ops" and v)
                      + f" ops {c['ops'] / n:.1f}")
    # Every rank fed every variant the same batch the same number of times, so every model must
    # hold the weights of the local one (averaging equal gradients changes nothing).
    ok = True
    for name, m in (("herd", m_herd), ("herd_copy", m_copy), ("ddp", m_ddp.module),
                    ("ddp_view", m_ddpv.module)):
        for (pn, p), q in zip(m.named_parameters(), m_local.parameters()):
            if not torch.allclose(p, q, rtol=1e-4, atol=1e-6):
                ok = False
                print(f"rank {rank}: {name} {pn} differs from the local model by "
                      f"{(p - q).abs().max().item():.3g}", file=sys.stderr)
    bad = hvd.allreduce(torch.tensor([0 if ok else 1]), op=hvd.Max, name="bench.ok").item()
    dist.destroy_process_group()
    hvd.shutdown()
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
