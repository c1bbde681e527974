#!/usr/bin/env python3
"""run_timeline.py - runs timeline_workload under mpiexec with HERD_TIMELINE set and checks the
Chrome trace it leaves (docs/operations.md, "The timeline"; writer in src/timeline.c).

    run_timeline.py --workload EXE --np N [--per-rank] [--crash] [--seed S] -- MPIEXEC ARGS...

MPIEXEC ARGS is the launcher up to (not including) the program, e.g.
`mpiexec -n 2 --oversubscribe`. Without --per-rank, HERD_TIMELINE is a plain path and only rank 0
may write it; with it, the path holds %r and every rank writes its own file.

Checked, per file:
  - normal run: the whole file is valid JSON (a list); --crash (every rank _exit()s without
    herd_shutdown): the file is an unterminated array - not valid JSON as it stands, valid after
    dropping a trailing comma and appending "]" - and has no end record, yet holds every
    operation the job completed before exiting;
  - the first record names the process ("herd rank R"), every record has pid R;
  - every tensor of the manifest has exactly one row (tid) named after it by thread_name
    metadata written before the row's first event, and no row names another tensor;
  - per row, one life per submission: QUEUED, NEGOTIATE, READY marks (args.rank in -1..N-1; one
    with -1 where NEGOTIATE ends; one with this rank's own number in a life negotiated by name:
    the first, and the one after the count changed), then either PACK, ALLREDUCE/BROADCAST,
    UNPACK (a fused group: group_tensors > 1) or the collective alone (group_tensors == 1);
    tensors at or above the threshold, and empty ones, always alone; BROADCAST for broadcasts;
  - timestamps: QUEUED ends where NEGOTIATE starts, which ends where the first group phase
    starts; PACK, collective and UNPACK are back to back; marks lie within the life's
    negotiation; every duration >= 0; lives do not overlap;
  - group args: the rows sharing a group phase (same phase, ts and args) number group_tensors
    and their bytes (the manifest's, for that step) sum to group_bytes; a fused group stays
    within the threshold; at least one fused group and one broadcast in the file;
  - normal run: the last record is herd_timeline_end with args.dropped_events == 0.
Prints every failed check and a summary line "timeline: N checks passed, M failed".
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

EPS = 0.0025  # microseconds: ts and dur are printed with 3 decimals, each rounded


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAILED: " + what, flush=True)
        return ok


def load_trace(path, crash, c):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not crash:
        try:
            events = json.loads(text)
        except ValueError as e:
            c.check(False, "%s is not valid JSON after a normal shutdown: %s" % (path, e))
            return None
        c.check(isinstance(events, list), "%s is a JSON array" % path)
        return events if isinstance(events, list) else None
    # Crash: '[' then events separated by ',\n', never closed.
    body = text.rstrip()
    c.check(body.startswith("["), "%s starts with '['" % path)
    c.check(not body.endswith("]"), "%s is unterminated after the crash" % path)
    try:
        json.loads(text)
        c.check(False, "%s is complete JSON although the process never shut herd down" % path)
    except ValueError:
        pass
    if body.endswith(","):
        body = body[:-1]
    try:
        events = json.loads(body + "\n]")
    except ValueError as e:
        c.check(False, "%s does not load as an unterminated array: %s (ends with %r)"
                % (path, e, text[-80:]))
        return None
    c.check(isinstance(events, list), "%s loads as a list" % path)
    return events


def near(a, b):
    return abs(a - b) <= EPS


def check_trace(path, rank, manifest, crash, c):
    events = load_trace(path, crash, c)
    if events is None:
        return {}
    nranks = manifest["ranks"]
    threshold = manifest["threshold"]
    tensors = {t["name"]: t for t in manifest["tensors"]}
    c.check(len(events) > 0 and events[0].get("name") == "process_name"
            and events[0].get("ph") == "M"
            and events[0].get("args", {}).get("name") == "herd rank %d" % rank,
            "%s: first record names the process 'herd rank %d': %r"
            % (path, rank, events[0] if events else None))
    c.check(all(e.get("pid") == rank for e in events),
            "%s: every record has pid %d" % (path, rank))

    end = [e for e in events if e.get("name") == "herd_timeline_end"]
    if crash:
        c.check(not end, "%s: no herd_timeline_end record after a crash" % path)
    else:
        c.check(len(end) == 1 and events[-1] is end[0],
                "%s: the last record (only) is herd_timeline_end" % path)
        if end:
            dropped = end[0].get("args", {}).get("dropped_events")
            c.check(isinstance(dropped, int) and dropped == 0,
                    "%s: herd_timeline_end args.dropped_events == 0 (got %r)" % (path, dropped))

    # Rows: thread_name metadata, written before the row's first event.
    row_name = {}
    rows = {}
    for i, e in enumerate(events):
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            tid = e.get("tid")
            c.check(tid not in row_name, "%s: row %r named once" % (path, tid))
            row_name[tid] = e.get("args", {}).get("name")
        elif e.get("ph") in ("X", "i"):
            tid = e.get("tid")
            if tid not in row_name:
                c.check(False, "%s: event %d (%s) on row %r before the row is named"
                        % (path, i, e.get("name"), tid))
                continue
            rows.setdefault(tid, []).append(e)
        elif e.get("ph") != "M":
            c.check(False, "%s: unexpected record %r" % (path, e))
    by_name = {}
    for tid, name in row_name.items():
        c.check(name in tensors, "%s: row %r is named after a tensor of the job: %r"
                % (path, tid, name))
        c.check(name not in by_name, "%s: tensor %r has one row" % (path, name))
        by_name[name] = tid
    for name in tensors:
        c.check(name in by_name, "%s: tensor %r has a row" % (path, name))

    groups = {}  # (phase, ts, group args) -> [(tensor, bytes)]
    fused_groups = 0
    broadcasts = 0
    for name, tid in sorted(by_name.items()):
        spec = tensors.get(name)
        if spec is None:
            continue
        evs = sorted(rows.get(tid, []), key=lambda e: e["ts"])
        for e in evs:
            c.check(e.get("ph") == "i" or e.get("dur", -1) >= 0,
                    "%s: %r %s has a duration >= 0" % (path, name, e.get("name")))
        queued_at = [e["ts"] for e in evs if e["name"] == "QUEUED"]
        steps = manifest["steps"]
        if not c.check(len(queued_at) == steps, "%s: %r has %d QUEUED (one per submission), "
                       "got %d" % (path, name, steps, len(queued_at))):
            continue
        coll_name = "BROADCAST" if spec["kind"] == "broadcast" else "ALLREDUCE"
        other_coll = "ALLREDUCE" if coll_name == "BROADCAST" else "BROADCAST"
        for step in range(steps):
            lo = queued_at[step]
            hi = queued_at[step + 1] if step + 1 < steps else float("inf")
            life = [e for e in evs if lo <= e["ts"] < hi]
            what = "%s: %r step %d" % (path, name, step)
            own = spec["bytes"][step]
            phases = {}
            for e in life:
                if e["ph"] == "X":
                    phases.setdefault(e["name"], []).append(e)
            marks = [e for e in life if e["ph"] == "i"]
            for ph in ("QUEUED", "NEGOTIATE", coll_name):
                c.check(len(phases.get(ph, [])) == 1, "%s: one %s phase (got %d)"
                        % (what, ph, len(phases.get(ph, []))))
            c.check(other_coll not in phases, "%s: no %s phase" % (what, other_coll))
            unknown = set(phases) - {"QUEUED", "NEGOTIATE", "PACK", coll_name, "UNPACK"}
            c.check(not unknown, "%s: no unknown phases (%s)" % (what, sorted(unknown)))
            if any(len(phases.get(ph, [])) != 1 for ph in ("QUEUED", "NEGOTIATE", coll_name)):
                continue
            q, neg, coll = phases["QUEUED"][0], phases["NEGOTIATE"][0], phases[coll_name][0]
            args = coll.get("args", {})
            gt, gb = args.get("group_tensors"), args.get("group_bytes")
            if not c.check(isinstance(gt, int) and isinstance(gb, int) and gt >= 1,
                           "%s: %s has integer group_tensors >= 1 and group_bytes (%r)"
                           % (what, coll_name, args)):
                continue
            # Marks: the ready bit-vector (-1) where negotiation ends; by name, this rank's own.
            c.check(all(m.get("name") == "READY" and isinstance(m.get("args", {}).get("rank"), int)
                        and -1 <= m["args"]["rank"] < nranks for m in marks),
                    "%s: marks are READY with args.rank in -1..%d: %r" % (what, nranks - 1, marks))
            c.check(any(m["args"].get("rank") == -1 and near(m["ts"], neg["ts"] + neg["dur"])
                        for m in marks if "args" in m),
                    "%s: a READY mark (rank -1) where NEGOTIATE ends" % what)
            by_name_life = step == 0 or spec["bytes"][step] != spec["bytes"][step - 1]
            if by_name_life:
                c.check(any(m.get("args", {}).get("rank") == rank for m in marks),
                        "%s: negotiated by name, so a READY mark for rank %d itself: %r"
                        % (what, rank, marks))
            c.check(all(q["ts"] + q["dur"] - EPS <= m["ts"] <= neg["ts"] + neg["dur"] + EPS
                        for m in marks),
                    "%s: READY marks lie within the negotiation" % what)
            # Order: QUEUED -> NEGOTIATE -> [PACK ->] collective [-> UNPACK].
            c.check(near(q["ts"] + q["dur"], neg["ts"]),
                    "%s: QUEUED ends (%.3f) where NEGOTIATE starts (%.3f)"
                    % (what, q["ts"] + q["dur"], neg["ts"]))
            alone = own >= threshold or own == 0
            if gt > 1:
                fused_groups += 1
                c.check(not alone, "%s: fused although %d bytes go alone" % (what, own))
                c.check(gb <= threshold, "%s: fused group of %d bytes within the threshold %d"
                        % (what, gb, threshold))
                ok = c.check(len(phases.get("PACK", [])) == 1
                             and len(phases.get("UNPACK", [])) == 1,
                             "%s: a fused group (%d tensors) has PACK and UNPACK" % (what, gt))
                if ok:
                    pack, unpack = phases["PACK"][0], phases["UNPACK"][0]
                    c.check(near(neg["ts"] + neg["dur"], pack["ts"]),
                            "%s: NEGOTIATE ends where PACK starts" % what)
                    c.check(near(pack["ts"] + pack["dur"], coll["ts"]),
                            "%s: PACK ends where %s starts" % (what, coll_name))
                    c.check(near(coll["ts"] + coll["dur"], unpack["ts"]),
                            "%s: %s ends where UNPACK starts" % (what, coll_name))
                    for p in (pack, unpack):
                        c.check(p.get("args") == args, "%s: %s args %r == %s args %r"
                                % (what, p["name"], p.get("args"), coll_name, args))
                    groups.setdefault(("PACK", pack["ts"], gt, gb), []).append((name, own))
                    groups.setdefault(("UNPACK", unpack["ts"], gt, gb), []).append((name, own))
            else:
                c.check("PACK" not in phases and "UNPACK" not in phases,
                        "%s: a tensor alone has no PACK/UNPACK" % what)
                c.check(gb == own, "%s: alone, group_bytes %d == its %d bytes" % (what, gb, own))
                c.check(near(neg["ts"] + neg["dur"], coll["ts"]),
                        "%s: NEGOTIATE ends where %s starts" % (what, coll_name))
            if alone:
                c.check(gt == 1, "%s: %d bytes (threshold %d) go alone, got group_tensors %d"
                        % (what, own, threshold, gt))
            c.check(gb >= own, "%s: group_bytes %d >= its %d bytes" % (what, gb, own))
            if coll_name == "BROADCAST":
                broadcasts += 1
            groups.setdefault((coll_name, coll["ts"], gt, gb), []).append((name, own))
            last = max(e["ts"] + e.get("dur", 0) for e in life)
            c.check(last < hi, "%s: its phases end before the next submission" % what)
    for (phase, ts, gt, gb), members in sorted(groups.items()):
        c.check(len(members) == gt, "%s: %s at %.3f: group_tensors %d, rows %s"
                % (path, phase, ts, gt, [m[0] for m in members]))
        c.check(sum(m[1] for m in members) == gb, "%s: %s at %.3f: group_bytes %d == sum of "
                "the members' bytes %d (%s)" % (path, phase, ts, gb,
                                                 sum(m[1] for m in members), members))
    return {"fused": fused_groups, "broadcasts": broadcasts, "events": len(events),
            "groups": len([g for g in groups if g[0] in ("ALLREDUCE", "BROADCAST")])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True)
    ap.add_argument("--np", type=int, required=True)
    ap.add_argument("--per-rank", action="store_true")
    ap.add_argument("--crash", action="store_true")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--keep", action="store_true", help="keep the trace directory")
    ap.add_argument("launcher", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    launcher = a.launcher[1:] if a.launcher[:1] == ["--"] else a.launcher
    if not launcher:
        ap.error("give the mpiexec command line after --")

    c = Checker()
    outdir = tempfile.mkdtemp(prefix="timeline-", dir=os.getcwd())
    pattern = os.path.join(outdir, "trace.%r.json" if a.per_rank else "trace.json")
    manifest_path = os.path.join(outdir, "manifest.json")
    env = dict(os.environ, HERD_TIMELINE=pattern)
    cmd = launcher + [a.workload, "--manifest", manifest_path, "--seed", a.seed]
    if a.crash:
        cmd.append("--crash")
    print("timeline: HERD_TIMELINE=%s HERD_FUSION_THRESHOLD=%s, seed %s\n  %s"
          % (pattern, env.get("HERD_FUSION_THRESHOLD", "(default)"), a.seed, " ".join(cmd)),
          flush=True)
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120, universal_newlines=True)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or ""), None
    print(out, end="", flush=True)
    c.check(rc is not None, "the job finished within 120 s")
    c.check("0 wrong result(s) in all" in out, "the workload's results were all exact")
    if a.crash:
        # mpiexec reports the improper exit; what matters is that every rank got to _exit().
        for r in range(a.np):
            c.check("crash: rank %d exits without herd_shutdown" % r in out,
                    "rank %d reached _exit()" % r)
    else:
        c.check(rc == 0, "the job exited with status 0 (got %r)" % rc)

    manifest = None
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        c.check(False, "the workload's manifest %s loads: %s" % (manifest_path, e))
    if manifest is not None:
        c.check(manifest["ranks"] == a.np, "the manifest says %d ranks" % a.np)
        written = sorted(f for f in os.listdir(outdir) if f.startswith("trace"))
        expect = ["trace.%d.json" % r for r in range(a.np)] if a.per_rank else ["trace.json"]
        c.check(written == sorted(expect), "trace files %s (got %s)" % (sorted(expect), written))
        totals = {"fused": 0, "broadcasts": 0}
        for r in range(a.np if a.per_rank else 1):
            path = os.path.join(outdir, expect[r])
            if not os.path.exists(path):
                continue
            stats = check_trace(path, r, manifest, a.crash, c)
            if stats:
                print("timeline: %s: %d records, %d groups, %d fused memberships, "
                      "%d broadcasts" % (os.path.basename(path), stats["events"],
                                         stats["groups"], stats["fused"], stats["broadcasts"]))
                for k in totals:
                    totals[k] += stats[k]
        c.check(totals["fused"] > 0, "at least one fused group (PACK/collective/UNPACK) "
                "in the trace(s)")
        c.check(totals["broadcasts"] > 0, "BROADCAST phases in the trace(s)")

    print("timeline: %d checks passed, %d failed" % (c.passed, c.failed), flush=True)
    if c.failed == 0 and not a.keep:
        shutil.rmtree(outdir, ignore_errors=True)
    else:
        print("timeline: traces kept in %s" % outdir)
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
