"""Summarises bench/shm.sh's launches: for each binding and HERD_SHM setting, the median over
rounds of each figure herd_bench computed within one launch (herd over the best plain-MPI
baseline, herd over the memory limit n*S/B, herd over MPI_Allreduce in the sweep, herd over MPI
per size and kind in the collectives section), with the best and worst round. Sections the
launches did not run are left out. Usage: python3 bench/shm_summary.py DIR"""
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
