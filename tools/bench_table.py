#!/usr/bin/env python3
"""Median table of a tools/bench.sh session (stdlib only).

Usage: tools/bench_table.py RESULTS.jsonl [--versions FILE] [--plot PNG] [--quick]

Reads the JSON lines loopbridge's bench program and the peer programs
print (one per workload run, "peer" naming the implementation), and prints
markdown: one row per workload with the median of its main figure for
each implementation, and a last column comparing the best loopbridge
driver with the best peer (ratio > 1: loopbridge is slower, or worse);
then the other figures the same way, and the errors. With --plot, draws
the per-callback workloads with gnuplot (skipped with a message when
gnuplot is missing).
"""
import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

LB = ["loopbridge-native", "loopbridge-native-shared", "loopbridge-glib", "loopbridge-tk"]
PEERS = ["asyncio", "uvloop", "gbulb", "libuv", "glib", "tcl"]
# The Python package's asyncio loops (bridges/python): compared with the
# Python peers in a table of their own, left out of the C ratio.
PY_LB = ["py-tk", "py-glib"]
PY_PEERS = ["asyncio", "uvloop", "gbulb"]
PY_WORKLOADS = ["W%d" % i for i in range(1, 10)]

# id: (field, what, lower_is_better); in OTHER, None: no ratio
MAIN = collections.OrderedDict([
    ("W1", ("per_op_ns", "call_soon batch, ns/callback", True)),
    ("W2", ("per_op_ns", "call_soon chain, ns/hop", True)),
    ("W3", ("schedule_ns", "timers, ns/schedule", True)),
    ("W4", ("per_op_ns", "threadsafe flood, ns/post", True)),
    ("W5", ("median_us", "ping-pong, median us", True)),
    ("W6", ("per_op_ns", "task switches, ns/await-resume", True)),
    ("W7", ("bytes_per_task", "sleeping tasks, bytes/task", True)),
    ("W8", ("per_op_ns", "future chain, ns/link", True)),
    ("W9", ("per_op_ns", "executor, ns/call", True)),
    ("W10", ("per_op_ns", "fd readiness, ns/event", True)),
    ("W11", ("msgs_per_s", "echo, messages/s", False)),
    ("G1", ("max_gap_ms", "frame gap under flood, max ms", True)),
    ("G2", ("cpu_s", "idle 5 s, CPU s", True)),
    ("G3", ("median_us", "thread to widget, median us", True)),
    ("G4", ("ticks_per_s_nested", "nested loop, task ticks/s inside", False)),
])

OTHER = [
    ("W1", "schedule_ns", "W1 schedule part, ns/call_soon", True),
    ("W3", "cancel_ns", "W3 ns/cancel", True),
    ("W3", "overhead_s", "W3 overhead s (wall - 1.0)", True),
    ("W3", "max_late_ms", "W3 max lateness ms", True),
    ("W3", "max_late_after_setup_ms", "W3 max lateness ms (deadline after setup)", True),
    ("W3", "setup_ms", "W3 setup ms (schedule and cancel)", True),
    ("W3", "due_in_setup", "W3 live timers already due when the loop started", True),
    ("W3", "min_late_ms", "W3 min lateness ms (below 0: a timer fired early)", None),
    ("W4", "lost", "W4 lost posts (must be 0)", None),
    ("W5", "p99_us", "W5 p99 us", True),
    ("W6", "rss_delta_kb", "W6 peak RSS delta KiB", True),
    ("W7", "create_ns", "W7 ns/task creation", True),
    ("W7", "overhead_s", "W7 overhead s (wall - 1.0)", True),
    ("W11", "median_us", "W11 echo median round trip us", True),
    ("W11", "p99_us", "W11 echo p99 round trip us", True),
    ("G1", "p99_gap_ms", "G1 p99 gap ms", True),
    ("G1", "first_tick_late_ms", "G1 first tick late ms", True),
    ("G1", "max_slice_ms", "G1 longest stretch of flood events without a pause ms", True),
    ("G1", "worst_gap_dark_max_ms", "G1 worst gap: longest pause in the flood ms", True),
    ("G1", "worst_gap_dark_cpu_ms", "G1 worst gap: CPU ms of the thread in that pause", None),
    ("G1", "worst_gap_preempted", "G1 worst gap: involuntary context switches", None),
    ("G2", "wakeups", "G2 wakeups in 5 s", True),
    ("G3", "p99_us", "G3 p99 us", True),
    ("G4", "yields_per_s_nested", "G4 yields/s inside", False),
    ("G4", "nested_vs_outside", "G4 ticks inside / outside", False),
    ("*", "proc_maxrss_kb", "peak RSS KiB (per process)", True),
]

# The per-callback workloads: what the plot shows.
PER_CALLBACK = [("W1", "call_soon"), ("W2", "chain"), ("W4", "threadsafe"),
                ("W6", "task switch"), ("W8", "future link")]


def wid(row):
    return str(row.get("workload", "?")).split("_")[0]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                rows.append({"peer": "?", "workload": "?", "error": "bad line: " + line[:120]})
    return rows


def fmt(v):
    if v is None:
        return "n/a"
    a = abs(v)
    if float(v).is_integer() and a < 1e6:
        return "%d" % v
    if a >= 1e6:
        return "%.3g" % v
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    if a == 0:
        return "0"
    return "%.3g" % v


class Session:
    def __init__(self, rows):
        self.rows = rows
        present = {r.get("peer") for r in rows}
        self.impls = [i for i in LB + PEERS + PY_LB if i in present]
        self.impls += sorted(p for p in present if p not in self.impls and p)
        self.lb = [i for i in self.impls if i.startswith("loopbridge-")]
        self.peers = [i for i in self.impls
                      if not i.startswith("loopbridge-") and i not in PY_LB]
        self.py_lb = [i for i in PY_LB if i in present]

    def values(self, w, field, impl):
        return [r[field] for r in self.rows
                if r.get("peer") == impl and wid(r) == w and "error" not in r
                and isinstance(r.get(field), (int, float))]

    def errors(self, w, impl):
        return [r["error"] for r in self.rows
                if r.get("peer") == impl and wid(r) == w and "error" in r]

    def median(self, w, field, impl):
        v = self.values(w, field, impl)
        return statistics.median(v) if v else None

    def ns(self, w, impl):
        return sorted({r.get("n") for r in self.rows
                       if r.get("peer") == impl and wid(r) == w and "n" in r and "error" not in r})

    def workloads(self):
        seen = {wid(r) for r in self.rows}
        return [w for w in MAIN if w in seen]

    def cell(self, w, field, impl, common_n):
        v = self.values(w, field, impl)
        if not v:
            errs = self.errors(w, impl)
            if not errs:
                return ""
            if all("not applicable" in e for e in errs):
                return "n/a"
            return "timeout" if any("timeout" in e for e in errs) else "ERR"
        s = fmt(statistics.median(v))
        ns = self.ns(w, impl)
        if common_n is not None and ns and ns != [common_n]:
            s += " (n=%s)" % ",".join(str(x) for x in ns)
        errs = [e for e in self.errors(w, impl) if "not applicable" not in e]
        if errs:
            s += " +%d ERR" % len(errs)
        return s

    def common_n(self, w):
        c = collections.Counter(r.get("n") for r in self.rows
                                if wid(r) == w and "n" in r and "error" not in r)
        return c.most_common(1)[0][0] if c else None

    def ratio(self, w, field, lower):
        def best(impls):
            vals = [(self.median(w, field, i), i) for i in impls]
            vals = [(v, i) for v, i in vals if v is not None]
            if not vals:
                return None, None
            return (min(vals) if lower else max(vals))
        lv, li = best(self.lb)
        pv, pi = best(self.peers)
        if lv is None or pv is None:
            return ""
        num, den = (lv, pv) if lower else (pv, lv)
        if den == 0:
            return ""
        r = num / den
        return "%s (lb-%s / %s)" % (fmt(r), li.replace("loopbridge-", ""), pi)

    def table(self, specs, title, with_ratio):
        cols = ["workload"] + self.impls + (["best loopbridge / best peer"] if with_ratio else [])
        out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for w, field, what, lower in specs:
            ws = [w] if w != "*" else self.workloads()
            for ww in ws:
                vals = [self.cell(ww, field, i, self.common_n(ww)) for i in self.impls]
                if not any(vals):
                    continue
                label = what if w != "*" else "%s %s" % (ww, what)
                row = [label] + vals
                if with_ratio:
                    row.append(self.ratio(ww, field, lower) if lower is not None else "")
                out.append("| " + " | ".join(row) + " |")
        return "\n".join(["", title, ""] + out)


def py_table(session):
    """The Python loops beside the Python peers, with each one's ratio to
    asyncio (the targets: at most 1 everywhere, W4 at most 0.1) and to
    gbulb (below 1 everywhere)."""
    peers = [p for p in PY_PEERS if p in session.impls]
    cols = ["workload"] + peers + session.py_lb
    refs = [r for r in ("asyncio", "gbulb") if r in peers]
    cols += ["%s / %s" % (i, r) for i in session.py_lb for r in refs]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for w in PY_WORKLOADS:
        field, what, lower = MAIN[w]
        vals = [session.cell(w, field, i, session.common_n(w)) for i in peers + session.py_lb]
        if not any(vals):
            continue
        row = ["%s %s" % (w, what)] + vals
        for i in session.py_lb:
            for r in refs:
                a, b = session.median(w, field, i), session.median(w, field, r)
                if a is None or b is None or not a or not b:
                    row.append("")
                else:
                    row.append(fmt(a / b if lower else b / a))
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(["", "Python loops (ratio below 1: the loopbridge loop is faster/better)",
                      ""] + out)


def plot(session, png):
    gp = shutil.which("gnuplot")
    if not gp:
        print("\n(gnuplot missing: no plot; install gnuplot-nox)", file=sys.stdout)
        return
    impls = [i for i in session.impls
             if any(session.median(w, "per_op_ns", i) is not None for w, _ in PER_CALLBACK)]
    if not impls:
        return
    tmp = tempfile.mkdtemp(prefix="bench-plot-")
    dat = os.path.join(tmp, "per-callback.dat")
    with open(dat, "w") as f:
        f.write("workload " + " ".join('"%s"' % i for i in impls) + "\n")
        for w, name in PER_CALLBACK:
            vals = []
            for i in impls:
                v = session.median(w, "per_op_ns", i)
                vals.append("%.4f" % v if v is not None and v > 0 else "?")
            f.write('"%s %s" %s\n' % (w, name, " ".join(vals)))
    # loopbridge drivers in blues, peers in other hues.
    colors = {"loopbridge-native": "#08519c", "loopbridge-glib": "#3182bd",
              "loopbridge-tk": "#9ecae1", "asyncio": "#e6550d", "uvloop": "#fdae6b",
              "gbulb": "#a63603", "libuv": "#31a354", "glib": "#756bb1", "tcl": "#636363",
              "py-tk": "#c6dbef", "py-glib": "#6baed6"}
    spare = ["#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
    lts = "\n".join('set linetype %d lc rgb "%s"' % (k + 1, colors.get(i) or spare[k % len(spare)])
                    for k, i in enumerate(impls))
    script = """
set terminal pngcairo size 1200,650 font "sans,10" noenhanced
""" + lts + """
set output '%s'
set title "Per-callback cost by implementation (median ns per operation, log scale; lower is better)"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [1:*]
set ylabel "ns per callback / hop / post / await-resume / link"
set grid ytics
set key outside right top
set xtics nomirror
plot for [c=2:%d] '%s' using c:xtic(1) title columnheader(c)
""" % (png, len(impls) + 1, dat)
    r = subprocess.run([gp], input=script, text=True, capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if r.returncode != 0:
        print("\n(gnuplot failed: %s)" % r.stderr.strip()[:300])
    else:
        print("\nPlot: %s" % png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--versions", help="versions JSON lines to print under the table")
    ap.add_argument("--plot", help="PNG to draw the per-callback workloads into")
    ap.add_argument("--quick", action="store_true", help="the session ran n/10")
    a = ap.parse_args()
    s = Session(load(a.results))
    if not s.rows:
        sys.exit("no results in " + a.results)
    runs = max((r.get("run", 1) for r in s.rows), default=1)
    print("Medians of %d run%s per cell, %s%s. Ratio: the best loopbridge driver's median "
          "over the best peer's (for figures where higher is better, the peer's over "
          "loopbridge's): above 1 loopbridge is slower/worse. Empty: not run by that "
          "implementation." % (runs, "" if runs == 1 else "s", os.path.basename(a.results),
                               "; quick: n/10" if a.quick else ""))
    specs = [(w, f, "%s %s" % (w, what), lower) for w, (f, what, lower) in MAIN.items()]
    print(s.table(specs, "Main figure per workload", True))
    print(s.table(OTHER, "Other figures", True))
    if s.py_lb:
        print(py_table(s))
    errs = collections.OrderedDict()
    for r in s.rows:
        if "error" in r and "not applicable" not in r["error"]:
            errs.setdefault((r.get("peer"), wid(r), r["error"]), []).append(r.get("run"))
    if errs:
        print("\nErrors:\n")
        for (p, w, e), rs in errs.items():
            print("- %s %s (run %s): %s" % (p, w, ",".join(str(x) for x in rs), e))
    if a.versions and os.path.exists(a.versions):
        print("\nVersions:\n")
        for line in open(a.versions):
            if line.strip():
                print("    " + line.strip())
    if a.plot:
        plot(s, a.plot)


if __name__ == "__main__":
    main()
