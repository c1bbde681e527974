#!/usr/bin/env python3
"""Data-parallel training of a small MLP in numpy, with herd averaging the gradients.

    python3 examples/python/train.py                       # one rank
    mpirun -np 4 python3 examples/python/train.py --min-accuracy 0.9

Every rank builds the same synthetic classification set (two Gaussian clusters per class, so a
hidden layer is needed) and trains on its own deterministic shard (samples rank, rank + size,
...). The ranks start from different random weights on purpose; broadcasting rank 0's weights
makes them equal. Each step, backward produces the gradients output layer first, and each one's
average over the ranks is submitted with push_pull_async as soon as it exists, so communication
overlaps the rest of backward; all are waited on before the update. Loss and accuracy are
reduced over the ranks and printed by rank 0.

At the end every rank checks that all ranks hold bit-identical weights (push_pull min and max
of every parameter must equal the local copy), and the program exits non-zero if they do not,
or if --min-accuracy is given and the test accuracy is below it. Every rank decides from reduced
values, so all ranks exit alike.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    import herd
except ModuleNotFoundError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
    import herd

PARAMS = ("W1", "b1", "W2", "b2")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128, help="global batch, split over ranks")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--samples", type=int, default=4096, help="training samples in all")
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--min-accuracy", type=float, default=None,
                   help="exit non-zero if the final test accuracy is below this")
    p.add_argument("--quiet", action="store_true", help="print only the final line")
    return p.parse_args(argv)


def make_dataset(n, features, classes, seed):
    """The same data on every rank: two clusters per class at random places."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.5, size=(2 * classes, features))
    center_class = np.repeat(np.arange(classes), 2)
    which = rng.integers(0, len(centers), size=n)
    x = centers[which] + rng.normal(size=(n, features))
    return x.astype(np.float32), center_class[which]


def init_params(rng, features, hidden, classes):
    return {
        "W1": (rng.standard_normal((features, hidden)) * np.sqrt(2.0 / features)).astype(
            np.float32),
        "b1": np.zeros(hidden, np.float32),
        "W2": (rng.standard_normal((hidden, classes)) * np.sqrt(1.0 / hidden)).astype(
            np.float32),
        "b2": np.zeros(classes, np.float32),
    }


def forward(p, x):
    pre = x @ p["W1"] + p["b1"]
    h = np.maximum(pre, 0)
    logits = h @ p["W2"] + p["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return pre, h, e / e.sum(axis=1, keepdims=True)


def train_step(p, x, y, lr):
    """One SGD step; the gradients are averaged over the ranks while backward goes on."""
    pre, h, prob = forward(p, x)
    loss = -np.mean(np.log(prob[np.arange(len(y)), y] + 1e-12))
    dlogits = prob
    dlogits[np.arange(len(y)), y] -= 1
    dlogits /= len(y)
    grads, handles = {}, []

    def reduce(name, g):
        grads[name] = g
        handles.append(herd.push_pull_async(g, name="grad." + name, op="average", out=g))

    reduce("W2", h.T @ dlogits)
    reduce("b2", dlogits.sum(axis=0))
    dh = dlogits @ p["W2"].T
    dh[pre <= 0] = 0
    reduce("W1", x.T @ dh)
    reduce("b1", dh.sum(axis=0))
    for hd in handles:
        hd.wait()
    for name in PARAMS:
        p[name] -= lr * grads[name]
    return loss


def evaluate(p, x, y, tag):
    """Accuracy over every rank's shard: correct and total counts summed over the ranks."""
    _, _, prob = forward(p, x)
    counts = np.array([np.sum(prob.argmax(axis=1) == y), len(y)], np.int64)
    herd.push_pull(counts, name=f"eval.{tag}", out=counts)
    return counts[0] / counts[1]


def identical_everywhere(p):
    """True on every rank iff all ranks hold bit-identical parameters."""
    same = True
    for name in PARAMS:
        lo = herd.push_pull(p[name], name=f"check.{name}.min", op="min")
        hi = herd.push_pull(p[name], name=f"check.{name}.max", op="max")
        bits = p[name].view(np.uint32)
        same &= np.array_equal(lo.view(np.uint32), bits) and np.array_equal(hi.view(np.uint32),
                                                                            bits)
    flag = np.array([1 if same else 0], np.int32)
    herd.push_pull(flag, name="check.identical", op="min", out=flag)
    return bool(flag[0])


def main(argv=None):
    args = parse_args(argv)
    herd.init()
    rank, size = herd.rank(), herd.size()
    say = print if rank == 0 and not args.quiet else (lambda *a, **k: None)
    start = time.monotonic()

    x, y = make_dataset(args.samples + args.samples // 4, args.features, args.classes,
                        args.seed)
    x_train, y_train = x[: args.samples][rank::size], y[: args.samples][rank::size]
    x_test, y_test = x[args.samples:][rank::size], y[args.samples:][rank::size]
    local_batch = max(args.batch_size // size, 1)
    # The same number of steps on every rank (shards differ by at most one sample).
    steps = (args.samples // size) // local_batch

    # Different seeds per rank on purpose: the broadcast is what makes the ranks agree.
    params = init_params(np.random.default_rng(args.seed + 1 + rank), args.features,
                         args.hidden, args.classes)
    differed = size > 1 and not identical_everywhere(params)
    for name in ("W2", "b2", "W1", "b1"):  # backward's order: its gradients go first
        herd.declare("grad." + name)
    handles = [herd.broadcast_async(params[n], root=0, name="init." + n) for n in PARAMS]
    for hd in handles:
        hd.wait()
    say(f"herd {herd.version()}: {size} rank(s), {len(y_train)} samples on rank 0, "
        f"batch {local_batch} per rank, {steps} steps per epoch; initial weights "
        f"{'differed across ranks and were' if differed else 'were'} broadcast from rank 0")

    rng = np.random.default_rng(args.seed + 100 + rank)  # each rank shuffles its own shard
    for epoch in range(args.epochs):
        order = rng.permutation(len(y_train))
        loss_sum = 0.0
        for s in range(steps):
            idx = order[s * local_batch:(s + 1) * local_batch]
            loss_sum += train_step(params, x_train[idx], y_train[idx], args.lr)
        loss = herd.push_pull(np.array([loss_sum / max(steps, 1)]), name=f"loss.{epoch}",
                              op="average")[0]
        acc = evaluate(params, x_test, y_test, epoch)
        say(f"epoch {epoch + 1:2d}  loss {loss:.4f}  test accuracy {acc:.3f}")

    acc = evaluate(params, x_test, y_test, "final")
    identical = identical_everywhere(params)
    rc = 0
    verdict = f"weights identical on all {size} rank(s)"
    if not identical:
        rc, verdict = 1, "FAIL: the ranks' weights differ"
    elif args.min_accuracy is not None and acc < args.min_accuracy:
        rc, verdict = 2, f"FAIL: accuracy {acc:.3f} < --min-accuracy {args.min_accuracy}"
    if rank == 0:
        print(f"final test accuracy {acc:.3f}; {verdict}; {time.monotonic() - start:.1f} s")
    return rc


if __name__ == "__main__":
    status = main()
    herd.shutdown()
    sys.exit(status)
