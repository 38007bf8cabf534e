"""The bench record of a machine: the speed ratios of several `make bench` runs of one commit, with spread.

    python -m reproduce.bench_record --ratio 'chunked_vs_token:speedup>=25' ... [--runs .benchmarks/runs]
    make bench-record                       # the same, with the Makefile's BENCH_RATIOS

Every `make bench` keeps its pytest-benchmark JSON in `.benchmarks/runs/` (ignored by git). This reads the
runs made on this machine (cpu model and cores) from the current commit with a clean tree, and writes
`results/bench/ratios/<machine>/record.json`: per ratio the median of the runs' medians (each run's median
is over its paired rounds), the runs' min-max, the quartiles of all rounds pooled, the goal and whether the
median meets it. A record already there is moved to `history/` first, with a line saying so. A tree with
uncommitted code, or no run to record: one line, exit 2. `bench_table_markdown` renders the committed
records as the README's speed-ratio table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from llm_efficiency_bench.core.benchruns import CODE_PATHS, BenchFileError, Goal, load_run, machine_env, measured, parse_goal
from llm_efficiency_bench.core.env import capture
from llm_efficiency_bench.core.ratios import spread
from llm_efficiency_bench.core.records import Record, RecordError, read_record
from llm_efficiency_bench.core.run_folder import RunFolder
from llm_efficiency_bench.core.tables import markdown

PAPER, EXPERIMENT = "bench", "ratios"


def record_dir(results: Path, machine: str) -> Path:
    """`<results>/bench/ratios/<machine>/`: one bench record per machine."""
    return Path(results) / PAPER / EXPERIMENT / machine


def select_runs(runs_dir: Path, env: dict[str, Any]) -> tuple[list[tuple[Path, dict[str, Any]]], int]:
    """The runs under `runs_dir` of `env`'s machine and commit from a clean tree, and how many others.

    Raises:
        BenchFileError: a run file that cannot be read (named; delete it or move it away).
    """
    chosen, others = [], 0
    for path in sorted(Path(runs_dir).glob("*.json")):
        run = load_run(path)
        renv = (run.get("suite") or {}).get("env") or {}
        if (renv.get("machine"), renv.get("git_sha"), renv.get("git_dirty")) == (env["machine"], env["git_sha"], False):
            chosen.append((path, run))
        else:
            others += 1
    return chosen, others


def build_record(runs: list[tuple[Path, dict[str, Any]]], goals: list[Goal], env: dict[str, Any]) -> Record:
    """A record of the ratios over `runs`: metrics for ratios with a goal, every ratio's spread in `extra`."""
    rec = Record(PAPER, EXPERIMENT, env["machine"])
    ratios: dict[str, dict[str, Any]] = {}
    for g in goals:
        per_name: dict[str, list] = {}
        for _, run in runs:
            for m in measured(run, g):
                per_name.setdefault(m.name, []).append(m)
        if not per_name:
            ratios[g.name] = {"goal": g.text, "met": None, "n_runs": 0, "status": "not measured"}
        for name, ms in per_name.items():
            medians = [m.spread.median for m in ms]
            value = statistics.median(medians)
            pooled = spread([x for m in ms for x in m.rounds])
            met = g.met(value)
            ratios[name] = {"about": ms[0].about, "benchmark": ms[0].benchmark, "goal": g.text, "met": met,
                            "status": "—" if met is None else ("met" if met else "NOT MET"),
                            "median": value, "min": min(medians), "max": max(medians), "n_runs": len(ms),
                            "run_medians": medians, "rounds_per_run": [m.spread.n for m in ms],
                            "rounds": pooled.to_dict()}
            if g.op:
                rec.add(name, value, "x", g.direction, kind="timing",
                        note=f"{ms[0].about}; median of {len(ms)} runs; goal {g.text}")
    suites = [run.get("suite") or {} for _, run in runs]
    rec.config = {"goals": [g.spec for g in goals], "runs": [p.name for p, _ in runs]}
    rec.env = {**capture("cpu"), **env}
    rec.extra = {"ratios": ratios, "run_created": [s.get("created") for s in suites],
                 "run_duration_s": [s.get("duration_s") for s in suites]}
    durations = [d for d in rec.extra["run_duration_s"] if d]
    rec.duration_s = sum(durations) if durations else None
    return rec


def bench_table_markdown(results_dir: Path) -> str:
    """The speed-ratio table of every machine's bench record under `results_dir` (Markdown)."""
    paths = sorted(Path(results_dir).glob(f"{PAPER}/{EXPERIMENT}/*/record.json"))
    if not paths:
        return "_No bench record yet: run `make bench` (five times on an idle machine), then `make bench-record`._\n"
    out = []
    for path in paths:
        try:
            rec = read_record(path)
        except RecordError as e:
            out.append(f"_Unreadable bench record: {e}_\n")
            continue
        env, ratios = rec.get("env", {}), (rec.get("extra") or {}).get("ratios") or {}
        runs = max((r.get("n_runs", 0) for r in ratios.values()), default=0)
        out.append(f"Machine: {env.get('cpu_model', '?')} ({env.get('cpu_count', '?')} cores, "
                   f"{env.get('torch_threads', '?')} torch threads), torch {env.get('torch', '?')}; "
                   f"{runs} run(s) of `make bench` at git `{str(env.get('git_sha'))[:10]}`, recorded "
                   f"{str(rec.get('created', '?'))[:10]}. Each run's ratio is the median of paired rounds; "
                   "the table gives the median over runs and the runs' range.\n")
        rows = []
        for name, r in ratios.items():
            if r.get("n_runs", 0) == 0:
                rows.append({"ratio": f"`{name}`", "what": "", "median": "not measured", "range over runs": "—",
                             "IQR of rounds": "—", "runs": 0, "goal": r.get("goal"), "met": "—"})
                continue
            q = r.get("rounds") or {}
            rows.append({"ratio": f"`{name}`", "what": r.get("about", ""), "median": f"{r['median']:.3g}x",
                         "range over runs": f"{r['min']:.3g}-{r['max']:.3g}",
                         "IQR of rounds": f"{q.get('p25', float('nan')):.3g}-{q.get('p75', float('nan')):.3g}",
                         "runs": r["n_runs"], "goal": r.get("goal"),
                         "met": {True: "yes", False: "**NOT MET**"}.get(r.get("met"), "—")})
        out.append(markdown(rows))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=Path(".benchmarks/runs"), help="folder of kept runs")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--ratio", action="append", default=[], metavar="[BENCH:]KEY[>=VALUE]")
    a = ap.parse_args(argv)
    env = machine_env()
    try:
        goals = [parse_goal(s) for s in a.ratio]
        if not goals:
            raise ValueError("--ratio: give at least one ratio to record")
        if env["git_dirty"]:
            raise ValueError(f"uncommitted changes under {' '.join(CODE_PATHS)}: commit them, then run "
                             "`make bench` again; a record names the commit it measured")
        runs, others = select_runs(a.runs, env)
    except (ValueError, BenchFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print(f"error: {a.runs}: no run of git {str(env['git_sha'])[:10]} on {env['machine']} from a clean tree "
              f"({others} other run(s) ignored); run `make bench` first", file=sys.stderr)
        return 2
    directory = record_dir(a.results, env["machine"])
    old = directory / "record.json"
    if old.exists():
        try:
            was = str(read_record(old).get("env", {}).get("git_sha"))[:10]
        except RecordError:
            was = "unreadable"
        print(f"[bench_record] {old} (git {was}) is replaced; the earlier record moves to history/")
    rec = build_record(runs, goals, env)
    path = RunFolder(directory).write_record(rec)
    print(f"[bench_record] {len(runs)} run(s) of git {str(env['git_sha'])[:10]} on {env['machine']} -> {path} "
          f"({others} other run(s) ignored)")
    print(bench_table_markdown(a.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
