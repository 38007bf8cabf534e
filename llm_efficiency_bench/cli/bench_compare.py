"""Report the speed ratios of a `make bench` run against their goals, and compare two runs of one machine.

    python -m reproduce.bench_compare .benchmarks/latest.json --ratio 'chunked_vs_token:speedup>=25'
    python -m reproduce.bench_compare .benchmarks/base.json .benchmarks/latest.json --fail 0.25 --ratio ...

One file: a table of every `--ratio` (median of its paired rounds, min-max, interquartile range, rounds,
goal, and "met" / "NOT MET" / "not measured"). A goal describes an idle machine, so missing it is reported,
not failed: the exit code is 0 (1 with `--strict`). Two files (a saved baseline, then the new run): each
benchmark's median time and each ratio's median are compared, and anything worse than `--fail` (0.25 =
25%) is "regressed" (exit 1). Timings are only comparable on one machine: a baseline from another machine
(cpu model and cores) or run with another torch thread count is refused. A missing, unreadable or malformed file or `--ratio`: one line, exit 2.
Ratio specs are `[BENCH:]KEY[>=|<=VALUE]` (`llm_efficiency_bench.core.benchruns`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llm_efficiency_bench.core.benchruns import BenchFileError, Goal, load_run, measured, parse_goal
from llm_efficiency_bench.core.tables import markdown


def ratio_rows(run: dict[str, Any], goals: list[Goal]) -> list[dict[str, Any]]:
    """One row per measured ratio (or per goal nobody measured): median, spread, goal and status."""
    rows = []
    for g in goals:
        hits = measured(run, g)
        if not hits:
            rows.append({"ratio": g.name, "median": None, "min-max": "—", "IQR": "—", "rounds": 0,
                         "goal": g.text, "status": "not measured"})
        for m in hits:
            s, met = m.spread, g.met(m.spread.median)
            rows.append({"ratio": m.name, "median": f"{s.median:.3g}", "min-max": f"{s.min:.3g}-{s.max:.3g}",
                         "IQR": f"{s.p25:.3g}-{s.p75:.3g}", "rounds": s.n, "goal": g.text,
                         "status": "—" if met is None else ("met" if met else "NOT MET")})
    return rows


def _same_machine(base: dict[str, Any], new: dict[str, Any]) -> tuple[bool, str, str]:
    def who(run: dict[str, Any]) -> str:
        env = (run.get("suite") or {}).get("env") or {}
        machine = env.get("machine") or str((run.get("machine_info") or {}).get("cpu", {}).get("brand_raw", "?"))
        return f"{machine} ({env.get('torch_threads', '?')} torch threads)"

    a, b = who(base), who(new)
    return a == b, a, b


def compare_runs(base: dict[str, Any], new: dict[str, Any], goals: list[Goal],
                 fail: float) -> tuple[list[dict[str, Any]], bool]:
    """Rows per benchmark median and per ratio median (base vs new), and whether any regressed by > `fail`."""
    rows, bad = [], False
    b_all = {b["fullname"]: b for b in base["benchmarks"]}
    n_all = {b["fullname"]: b for b in new["benchmarks"]}
    for name in sorted(set(b_all) | set(n_all)):
        if name not in b_all or name not in n_all:
            rows.append({"what": name, "verdict": "only in " + ("new" if name in n_all else "base")})
            continue
        o, n = b_all[name]["stats"]["median"], n_all[name]["stats"]["median"]
        change = n / o - 1  # time: higher is worse
        verdict = "regressed" if change > fail else ("faster" if change < -fail else "same")
        bad |= verdict == "regressed"
        rows.append({"what": f"{name} (median s)", "base": f"{o:.4g}", "new": f"{n:.4g}", "change": f"{change:+.1%}",
                     "verdict": verdict})
    for g in (g for g in goals if g.op):
        old = {m.name: m.spread.median for m in measured(base, g)}
        for m in measured(new, g):
            if m.name not in old:
                continue
            o, n = old[m.name], m.spread.median
            worse = o / n - 1 if g.direction == "higher" else n / o - 1  # slowdown factor minus one
            verdict = "regressed" if worse > fail else ("better" if worse < -fail else "same")
            bad |= verdict == "regressed"
            rows.append({"what": f"{m.name} (ratio)", "base": f"{o:.4g}", "new": f"{n:.4g}", "change": f"{n / o - 1:+.1%}",
                         "verdict": verdict})
    return rows, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", metavar="JSON", help="[base.json] new.json")
    ap.add_argument("--fail", type=float, default=0.25, help="allowed regression against the base (0.25 = 25%%)")
    ap.add_argument("--ratio", action="append", default=[], metavar="[BENCH:]KEY[>=VALUE]",
                    help="a ratio a benchmark recorded in extra_info, with an optional goal (repeatable)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is not met or not measured")
    a = ap.parse_args(argv)
    if len(a.files) > 2:
        ap.error("give at most two files: [base.json] new.json")
    if len(a.files) == 1 and not a.ratio:
        ap.error("with one file, give at least one --ratio")
    try:
        goals = [parse_goal(s) for s in a.ratio]
        runs = [load_run(f) for f in a.files]
    except (ValueError, BenchFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    new, bad = runs[-1], False
    rows = ratio_rows(new, goals)
    if rows:
        print(markdown(rows))
        unmet = [r["ratio"] for r in rows if r["status"] in ("NOT MET", "not measured")]
        if unmet:
            print(f"goals not met or not measured: {', '.join(unmet)} (a goal holds on an idle machine; "
                  "see docs/benchmarks.md)")
        bad = a.strict and bool(unmet)
    if len(runs) == 2:
        same, who_base, who_new = _same_machine(runs[0], new)
        if not same:
            print(f"error: {a.files[0]} comes from {who_base}, {a.files[1]} from {who_new}: timings compare "
                  "only on one machine; save a baseline here (make bench-baseline)", file=sys.stderr)
            return 2
        rows, worse = compare_runs(runs[0], new, goals, a.fail)
        print(markdown(rows, ["what", "base", "new", "change", "verdict"]))
        bad |= worse
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
