#!/usr/bin/env python3
"""Data-parallel training of a small CNN on scikit-learn's digits with herd.torch.

    python3 examples/pytorch/train.py                          # one process
    mpirun -np 4 python3 examples/pytorch/train.py --check-single --min-accuracy 0.95

The script is written as for horovod.torch (`import herd.torch as hvd`): the ranks start from
different random weights and broadcast rank 0's (and its optimizer state); each rank reads its
shard of every global batch through torch's DistributedSampler; DistributedOptimizer averages
the gradients during backward; test accuracy is counted on every rank's share of the test set
and summed over the ranks. Rank 0 writes a checkpoint after every epoch; --resume continues from
it (only rank 0 reads it, the broadcasts bring the other ranks along).

--check-single: afterwards rank 0 trains the same model in one process on the same global
batches (no herd) and the program fails unless both reach the same test accuracy. The model is
float64 by default so that this holds exactly: the ranks' average sums in another order than one
process does, and in float32 those last-bit differences grow over 200 momentum steps into a
different trajectory (measured with --dtype float32 --lr 0.1: 4 ranks 0.9554, one process
0.9749; with --lr 0.05 both 0.9554). In float64 they stay near 1e-12 and the predictions agree.
--min-accuracy: fail below this test accuracy. Every rank exits alike.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch  # before herd: see docs/torch.md (import order)

try:
    import herd.torch as hvd
except ModuleNotFoundError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
    import herd.torch as hvd

import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="global batch, split over ranks")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="float64 (default) keeps N ranks and one process on one trajectory; "
                        "see --check-single")
    p.add_argument("--checkpoint", default=None, help="rank 0 saves here after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many epochs in this run (to test --resume)")
    p.add_argument("--check-single", action="store_true",
                   help="also train in one process and require the same test accuracy")
    p.add_argument("--min-accuracy", type=float, default=None)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = torch.nn.Linear(32 * 4 * 4, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def datasets(seed, dtype):
    """The same split on every rank: 80% train, 20% test, pixels scaled to [0, 1]."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=dtype).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test])


def loader(train_set, batch_size, replicas, rank, seed):
    sampler = DistributedSampler(train_set, num_replicas=replicas, rank=rank, shuffle=True,
                                 seed=seed, drop_last=True)
    return sampler, DataLoader(train_set, batch_size=batch_size // replicas, sampler=sampler,
                               drop_last=True)


def correct_count(model, test_set, rank, size):
    """(correct, seen) over this rank's rows rank, rank + size, ... of the test set."""
    model.eval()
    x, y = test_set.tensors
    with torch.no_grad():
        pred = model(x[rank::size]).argmax(1)
    model.train()
    return int((pred == y[rank::size]).sum()), len(y[rank::size])


def train_one_process(args, dtype, train_set, test_set):
    """The reference: one process, plain torch, same initial weights and global batches."""
    torch.manual_seed(args.seed)  # rank 0's initial weights
    model = Net().to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    sampler, batches = loader(train_set, args.batch_size, 1, 0, args.seed)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for x, y in batches:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    c, n = correct_count(model, test_set, 0, 1)
    return c / n


def main(argv=None):
    args = parse_args(argv)
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(1)  # several ranks share this machine's cores
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    if args.batch_size % size:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by {size} ranks")
    train_set, test_set = datasets(args.seed, dtype)

    torch.manual_seed(args.seed + rank)  # different on purpose: the broadcast fixes it
    model = Net().to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    start_epoch = 0
    if args.resume and rank == 0 and args.checkpoint and os.path.exists(args.checkpoint):
        ckpt = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch = ckpt["epoch"]
    start_epoch = hvd.broadcast_object(start_epoch, root_rank=0, name="start_epoch")
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(opt, root_rank=0)
    opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters())

    sampler, batches = loader(train_set, args.batch_size, size, rank, args.seed)
    ranks = f"{size} rank{'s' if size > 1 else ''}"
    end_epoch = args.epochs if args.stop_after is None else min(args.epochs,
                                                                start_epoch + args.stop_after)
    t0 = time.perf_counter()
    for epoch in range(start_epoch, end_epoch):
        sampler.set_epoch(epoch)
        total = torch.zeros(2, dtype=torch.float64)  # loss sum, batches
        for x, y in batches:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total += torch.tensor([loss.item(), 1.0], dtype=torch.float64)
        c, n = correct_count(model, test_set, rank, size)
        # Averaged over the ranks: mean loss; accuracy from the summed counts (exact).
        loss_avg = hvd.allreduce(total[0] / total[1], name="epoch.loss")
        counts = hvd.allreduce(torch.tensor([c, n], dtype=torch.int64), op=hvd.Sum,
                               name="epoch.correct")
        acc = counts[0].item() / counts[1].item()
        if rank == 0:
            if args.checkpoint:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "epoch": epoch + 1}, args.checkpoint)
            if not args.quiet:
                print(f"epoch {epoch + 1:2d}  loss {loss_avg.item():.4f}  test accuracy "
                      f"{acc:.4f}  ({ranks}, {time.perf_counter() - t0:.1f} s)",
                      flush=True)
    c, n = correct_count(model, test_set, rank, size)
    counts = hvd.allreduce(torch.tensor([c, n], dtype=torch.int64), op=hvd.Sum, name="final")
    acc = counts[0].item() / counts[1].item()

    # Every rank holds the same weights (max == min over the ranks, bit for bit).
    same = all(torch.equal(hvd.allreduce(p.detach(), op=hvd.Max, name=f"check.max.{k}"),
                           hvd.allreduce(p.detach(), op=hvd.Min, name=f"check.min.{k}"))
               for k, p in model.named_parameters())
    failures = []
    if not same:
        failures.append("ranks hold different weights")
    if end_epoch == args.epochs and args.min_accuracy is not None and acc < args.min_accuracy:
        failures.append(f"test accuracy {acc:.4f} < {args.min_accuracy}")
    single = None
    if args.check_single and end_epoch == args.epochs and start_epoch == 0:
        if rank == 0:
            single = train_one_process(args, dtype, train_set, test_set)
        single = hvd.broadcast_object(single, root_rank=0, name="single")
        if single != acc:
            failures.append(f"one process reached test accuracy {single:.4f}, {ranks} "
                            f"{acc:.4f}")
    if rank == 0:
        extra = "" if single is None else f"; one process on the same global batches: {single:.4f}"
        print(f"final test accuracy {acc:.4f} after epoch {end_epoch} ({ranks}, global "
              f"batch {args.batch_size}){extra}", flush=True)
        for f in failures:
            print(f"FAILED: {f}", file=sys.stderr, flush=True)
    hvd.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
