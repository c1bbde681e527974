"""Summarises bench/shm.sh's launches: for each binding and HERD_SHM setting, the median over
rounds of each figure herd_bench computed within one launch (herd over the best plain-MPI
baseline, herd over the memory limit n*S/B, herd over MPI_Allreduce in the sweep, herd over MPI
per size and kind in the collectives section), with the best and worst round. Sections the
launches did not run are left out. Then every launch on its own line, with what tells the VM's
state during it (MPI_Allreduce's busbw at the smallest swept size for the sweep, and for each
workload the time of its baseline (a), MPI_Allreduce per tensor, in ms; the memcpy bandwidth
beside them does not tell the states apart): medians over rounds mix launches taken in
different states; the state may change between the sweep and the workloads of one launch.
Usage: python3 bench/shm_summary.py DIR"""
import glob
import json
import os
import statistics
import sys


def load(d):
    runs = {}
    for path in sorted(glob.glob(os.path.join(d, "r*-*-shm*.json"))):
        name = os.path.basename(path)[:-5]
        _, bind, shm = name.split("-")
        try:
            with open(path) as f:
                j = json.load(f)
        except (OSError, ValueError):
            print(f"{name}: no result (see {path[:-5]}.err)")
            continue
        if j.get("wrong", 0):
            print(f"{name}: WRONG RESULTS ({j['wrong']})")
        runs.setdefault((bind, shm), []).append(j)
    return runs


def fmt(v):
    if not v:
        return "-"
    return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"


def small_sections(runs, keys):
    """Latency, tiny tensors, idle CPU and allocations, when the launches measured them."""
    rows = []
    for k in keys:
        js = runs[k]
        lat = [j["latency"] for j in js if "latency" in j]
        tiny = [j["tiny"] for j in js if "tiny" in j]
        idle = [j["idle"]["herd"] for j in js if "idle" in j]
        if not (lat or tiny or idle):
            continue
        steady = [m["steady"]["herd_allocs_per_step"] for j in js for w in j.get("workloads", [])
                  for m in w["methods"] if m["key"] == "herd"]
        rows.append((k, fmt([x["herd"]["us"]["median"] for x in lat]),
                     fmt([x["mpi"]["us"]["median"] for x in lat]),
                     fmt([x["herd"]["back_to_back_us"]["median"] for x in lat]),
                     fmt([x["herd"]["us_per_tensor"] for x in tiny]),
                     fmt([x["mpi"]["us_per_tensor"] for x in tiny]),
                     fmt([max(x["cpu_pct_per_rank"]) for x in idle]),
                     fmt([x["herd"].get("herd_allocs_per_op", float("nan")) for x in lat] +
                         [x["herd"].get("herd_allocs_per_step", float("nan")) for x in tiny] +
                         [x.get("herd_allocs", float("nan")) for x in idle] + steady)))
    if not rows:
        return
    print("\n== latency, tiny tensors, idle: median over rounds [best-worst round]")
    print("| binding | HERD_SHM | 4 B herd us | 4 B MPI us | herd back to back us "
          "| tiny herd us/tensor | tiny MPI us/tensor | idle herd max % of a core "
          "| allocations by herd |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0][0]} | {r[0][1][-1]} | " + " | ".join(r[1:]) + " |")


def collectives(runs, keys):
    """herd / MPI per size for each kind of the collectives section, when the launches ran it."""
    for kind in ("broadcast", "allgather", "reducescatter"):
        sizes = sorted({s["bytes"] for js in runs.values() for j in js
                        for s in j.get("collectives", {}).get(kind, [])})
        if not sizes:
            continue
        print(f"\n== {kind}: herd / MPI time, median over rounds [best-worst round]")
        print("| bytes | " + " | ".join(f"{b} HERD_SHM={s[-1]}" for b, s in keys) + " |")
        print("|---|" + "---|" * len(keys))
        for size in sizes:
            cells = []
            for k in keys:
                v = [s["herd_over_mpi"] for j in runs[k]
                     for s in j.get("collectives", {}).get(kind, []) if s["bytes"] == size]
                cells.append(fmt(v))
            print(f"| {label(size)} | " + " | ".join(cells) + " |")


def label(size):
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


def main(d):
    runs = load(d)
    keys = sorted(runs)
    small_sections(runs, keys)
    collectives(runs, keys)
    names = []
    for js in runs.values():
        for j in js:
            for w in j.get("workloads", []):
                if w["name"] not in names:
                    names.append(w["name"])
    if names:
        workloads(runs, keys, names)
    sweep(runs, keys)
    per_launch(d, names)


def per_launch(d, names):
    """One line per launch, in the order they ran."""
    def order(path):  # bench/shm.sh's order: by round, default binding first, plane first
        r, bind, shm = os.path.basename(path)[:-5].split("-")
        return (int(r[1:]), bind != "default", shm != "shm1")

    paths = sorted(glob.glob(os.path.join(d, "r*-*-shm*.json")), key=order)
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                j = json.load(f)
        except (OSError, ValueError):
            continue
        sizes = j.get("sweep", {}).get("sizes", [])
        mem = j.get("memcpy", {}).get("alone_GBps", {}).get("median")
        cells = [os.path.basename(path)[:-5], f"{mem:.1f}" if mem else "-",
                 f"{sizes[0]['mpi']['busbw_GBps']:.1f}" if sizes else "-",
                 " ".join(f"{x['herd_over_mpi']:.2f}" for x in sizes) or "-"]
        for name in names:
            w = [x for x in j.get("workloads", []) if x["name"] == name]
            per_tensor = [m["wall_ms"]["median"] for m in (w[0]["methods"] if w else [])
                          if m.get("label", "").startswith("(a)")]
            cells.append(f"{w[0]['herd_over_best_baseline']:.2f} / {w[0]['herd_over_limit']:.2f}"
                         + (f" ({per_tensor[0]:.0f})" if per_tensor else "") if w else "-")
        rows.append(cells)
    if not rows:
        return
    print("\n== every launch, in the order they ran")
    print("| launch | memcpy GB/s | MPI busbw GB/s, smallest size | sweep herd / MPI by size | "
          + " | ".join(f"{n}: herd / best MPI, / limit ((a) ms)" for n in names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def workloads(runs, keys, names):
    print("\n== workload steps: median over rounds [best-worst round]")
    print("| workload | binding | HERD_SHM | herd ms | best MPI baseline ms | herd / best MPI "
          "| herd / limit n*S/B |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        for k in keys:
            herd, best, rb, rl = [], [], [], []
            for j in runs[k]:
                for w in j.get("workloads", []):
                    if w["name"] != name:
                        continue
                    m = {x["key"]: x for x in w["methods"]}
                    herd.append(m["herd"]["wall_ms"]["median"])
                    best.append(m[w["best_baseline"]]["wall_ms"]["median"])
                    rb.append(w["herd_over_best_baseline"])
                    rl.append(w["herd_over_limit"])
            print(f"| {name} | {k[0]} | {k[1][-1]} | {fmt(herd)} | {fmt(best)} | {fmt(rb)} "
                  f"| {fmt(rl)} |")


def sweep(runs, keys):
    sizes = []
    for js in runs.values():
        for j in js:
            for s in j.get("sweep", {}).get("sizes", []):
                if s["bytes"] not in sizes:
                    sizes.append(s["bytes"])
    if not sizes:
        return
    sizes.sort()
    print("\n== sweep: herd / MPI_Allreduce time (lower is better; 0.5 = twice the busbw)")
    print("| bytes | " + " | ".join(f"{b} HERD_SHM={s[-1]}" for b, s in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for size in sizes:
        cells = []
        for k in keys:
            v = [s["herd_over_mpi"] for j in runs[k] for s in j.get("sweep", {}).get("sizes", [])
                 if s["bytes"] == size]
            bw = [s["herd"]["busbw_GBps"] for j in runs[k]
                  for s in j.get("sweep", {}).get("sizes", []) if s["bytes"] == size]
            cells.append(f"{fmt(v)} ({statistics.median(bw):.1f} GB/s)" if bw else "-")
        label = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/herd-shm")
