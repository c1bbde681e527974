#!/usr/bin/env bash
# examples/pytorch/train.py interrupted after 3 epochs and resumed from rank 0's checkpoint ends
# with the test accuracy and, bit for bit, the weights and optimizer state of an uninterrupted run.
# Usage: check_resume.sh <mpiexec and its flags...>   (PYTHONPATH, HERD_LIBRARY and HERD_PYTHON,
# the interpreter, from the caller)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
train="$here/../../examples/pytorch/train.py"
py=${HERD_PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$@" "$py" "$train" --epochs 6 --quiet --checkpoint "$tmp/full.pt" > "$tmp/full.txt"
"$@" "$py" "$train" --epochs 6 --quiet --checkpoint "$tmp/ckpt.pt" --stop-after 3 > /dev/null
"$@" "$py" "$train" --epochs 6 --quiet --checkpoint "$tmp/ckpt.pt" --resume > "$tmp/resumed.txt"
cat "$tmp/full.txt" "$tmp/resumed.txt"
"$py" - "$tmp" <<'PY'
import sys
import torch
d = sys.argv[1]
a, b = (open(f"{d}/{n}.txt").read().split("final test accuracy ")[1].split(" after")[0]
        for n in ("full", "resumed"))
full, resumed = (torch.load(f"{d}/{n}.pt", weights_only=False) for n in ("full", "ckpt"))
same_w = all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])
fs, rs = full["optimizer"]["state"], resumed["optimizer"]["state"]
same_o = fs.keys() == rs.keys() and all(
    torch.equal(fs[i]["momentum_buffer"], rs[i]["momentum_buffer"]) for i in fs)
print(f"uninterrupted {a}, resumed {b}; same weights {same_w}, same momentum {same_o}")
sys.exit(0 if a == b and same_w and same_o else 1)
PY
