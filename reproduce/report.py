"""Rebuild every table and figure from saved records, without rerunning anything.

    python -m reproduce.report [--results results] [--out results/REPORT.md] [--profile cpu] [--readme [README.md]]

For each paper: the comparison paper | ours | delta | tolerance | status for every claim of
`references/<paper>.yaml` (a claim with no record says so), then each record's own tables and figures.
Figures are redrawn from the record's CSVs by `bench.<paper>.figures.rebuild` (the code the experiments
draw them with). A corrupt record, or a missing or corrupt CSV, is reported by name and skipped; it never
breaks the report for the others. `--readme` also rewrites the results block of the README (between its
markers, nothing else): headline claims, machine and run time per paper, and the key figures.

Only the records of `--profile` (default `cpu`) are reported, so a smoke or sweep run into `results/` never
puts smoke rows into the tracked REPORT.md or README. Papers, their titles, headline claims (`headline:`)
and key figures come from `references/<paper>.yaml`; a paper with records but no reference file is listed
after the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from bench.core.records import read_records
from bench.core.references import comparison_markdown, load_references, reference_papers, tagged

ALL_PROFILES = "all"


def load_records(results: Path, profile: str = ALL_PROFILES) -> tuple[list[tuple[Path, dict[str, Any]]], list[str]]:
    """The readable records under `results` of `profile` (`all`: every profile), and one message per
    unreadable one (`bench.core.records.read_records`)."""
    records, problems = read_records(results)
    return [(p, r) for p, r in records if profile == ALL_PROFILES or r["profile"] == profile], problems


def papers_of(records: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """Papers with a reference file (in their `report_order`), then any other paper a record names."""
    known = reference_papers()
    return known + sorted({r["paper"] for _, r in records} - set(known))


def _refs(paper: str) -> dict[str, Any]:
    """`references/<paper>.yaml`, or an empty mapping for a paper without one."""
    try:
        return load_references(paper)
    except FileNotFoundError:
        return {}


def title(paper: str) -> str:
    """The paper's display name (`title:` of its reference file)."""
    return str(_refs(paper).get("title", paper))


def _link(target: Path, base: Path) -> str:
    """`target` relative to the folder `base` (Markdown links are relative to the file's folder)."""
    return Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()


def _figures_module(paper: str) -> Any | None:
    try:
        return importlib.import_module(f"bench.{paper}.figures")
    except ModuleNotFoundError as e:
        if e.name != f"bench.{paper}.figures":
            raise  # the module exists but one of its imports is broken: that is a bug to see
        return None


def rebuild_figures(fig_mod: Any | None, run_dir: Path, rec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Redraw one record's figures; returns (figure files relative to run_dir, problems)."""
    problems: list[str] = []
    drawn: list[str] = []
    if fig_mod is not None and hasattr(fig_mod, "rebuild"):
        try:
            drawn = [str(Path(p).relative_to(run_dir)) for p in fig_mod.rebuild(run_dir, rec)]
        except Exception as e:  # a broken CSV must not break the other records
            from bench.core.plots import FigureDataError

            why = str(e) if isinstance(e, FigureDataError) else f"{type(e).__name__}: {e}"
            problems.append(f"figures of `{run_dir}` could not be redrawn from its CSVs: {why} "
                            "(any figure shown below is the one the run saved)")
    # A CSV no figure needs is still part of the record: say when it is gone (once, if rebuild said it already).
    problems += [f"`{run_dir / c}` is listed in the record but missing"
                 for c in rec.get("artifacts", {}).get("csv", [])
                 if not (run_dir / c).exists() and not any(c in p for p in problems)]
    return drawn, problems


def build(results: Path, out: Path, profile: str = "cpu") -> tuple[str, list[str]]:
    """Write `out` (REPORT.md) from the `profile` records under `results`; returns (text, problems)."""
    records, problems = load_records(results, profile)
    which = "" if profile == ALL_PROFILES else f"`{profile}` "
    lines = ["# Reproduction report", "",
             f"Built by `python -m reproduce.report` from {len(records)} {which}record(s) under `{results}`; "
             "nothing was rerun; figures redrawn from the records' CSVs. Status: `reproduced` (same model, "
             "within tolerance), `shape reproduced` (another model, the paper's shape holds), `not reproduced`, "
             "`not comparable` (another model, no shape condition), `not run on this machine`.", ""]
    if problems:
        lines += ["## Records that could not be read", ""] + [f"- {p}" for p in problems] + [""]
    for paper in papers_of(records):
        mine = [(p, r) for p, r in records if r["paper"] == paper]
        lines += [f"## {paper}", ""]
        try:
            lines += [comparison_markdown(paper, [r for _, r in mine]), ""]
        except FileNotFoundError:
            lines += ["_(no reference file)_", ""]
        fig_mod = _figures_module(paper)
        for path, rec in sorted(mine, key=lambda x: (x[1]["experiment"], x[1]["profile"], str(x[0]))):
            run_dir = path.parent
            minutes = (rec.get("duration_s") or 0) / 60
            env = rec.get("env", {})
            lines += [f"### {rec['experiment']} / {rec['profile']}", "",
                      f"{env.get('device_name', '?')}, torch {env.get('packages', {}).get('torch', '?')}, "
                      f"git {str(env.get('git_sha'))[:10]}, {minutes:.1f} min, created {rec.get('created')}", ""]
            drawn, trouble = rebuild_figures(fig_mod, run_dir, rec)
            problems += trouble
            lines += [f"> **problem:** {t}\n" for t in trouble]
            for table in rec.get("artifacts", {}).get("tables", []):
                p = run_dir / table
                if p.exists():
                    lines += [p.read_text(), ""]
            figs = list(dict.fromkeys(rec.get("artifacts", {}).get("figures", []) + drawn))
            for fig in figs:
                if fig.endswith(".png") and (run_dir / fig).exists():
                    lines += [f"![{rec['experiment']} {fig}]({_link(run_dir / fig, out.parent)})", ""]
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text, problems


# ------------------------------------------------------------------------------------------------ README
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def _model(rec: dict[str, Any]) -> str:
    """The model a record measured: the run's model, or the architectures an analytic count used."""
    cfg = rec.get("config") or {}
    models = (cfg.get("experiment") or {}).get("models")
    if isinstance(models, dict) and models:  # e.g. Fourier-VLM flops: real 7B/13B configs, no weights
        return "analytic: " + ", ".join(str((m or {}).get("name", k)) for k, m in models.items())
    return tagged(str((cfg.get("model") or {}).get("name", "?")), rec)


def _num(x: float) -> str:
    """Four significant digits, no trailing zeros (955.2, 0.838, 62.96)."""
    return f"{x:.4g}"


def headline_claims(paper: str) -> list[dict[str, Any]]:
    """The claims the README leads with: those with a `headline: <rank>` in the reference file, by rank."""
    return sorted((c for c in _refs(paper).get("claims", []) if c.get("headline")), key=lambda c: int(c["headline"]))


def headline_rows(paper: str, records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per headline claim of `paper` (and per matching record): claim | paper | ours (model) | status."""
    from bench.core.references import compare

    rows = []
    for c in headline_claims(paper):
        where = re.split(r"[;(]", str(c["source"]))[0].strip()  # "Fig. 5 (curves only; ...)" -> "Fig. 5"
        label = f"**{title(paper)}**, {where}: {c['claim']}"
        found = False
        for rec in (r for r in records if r.get("experiment") == c["experiment"]):
            (row,) = compare({"claims": [c]}, [rec])
            if row["ours"] is None:
                continue
            found = True
            rows.append({"claim": label, "paper": f"{_num(row['paper'])} ({c.get('paper_model', '?')})",
                         "ours (model)": f"{_num(row['ours'])} ({_model(rec)})", "status": row["status"]})
        if not found:
            rows.append({"claim": label, "paper": f"{_num(float(c['paper_value']))} ({c.get('paper_model', '?')})",
                         "ours (model)": "—", "status": "not run on this machine"})
    return rows


def _machine(recs: list[dict[str, Any]]) -> str:
    seen = dict.fromkeys(f"{r.get('env', {}).get('device_name', '?')}, torch "
                         f"{r.get('env', {}).get('packages', {}).get('torch', '?')}" for r in recs)
    return "; ".join(seen)


def _run_time(recs: list[dict[str, Any]]) -> str:
    """'123.4 min: ppl_4m 100.2, ...' (longest first), from the records' duration_s."""
    mins = sorted(((r.get("duration_s") or 0) / 60, tagged(r["experiment"], r)) for r in recs)[::-1]
    return f"{sum(m for m, _ in mins):.1f} min: " + ", ".join(f"{e} {m:.1f}" for m, e in mins)


def readme_section(results: Path, profile: str = "cpu", base: Path = Path(".")) -> str:
    """The README's results block, from the `profile` records only: the headline claims, the machine and the
    time each paper's profile took, and the key figures (links relative to the folder `base`)."""
    from bench.core.tables import markdown

    records = load_records(results, profile)[0]
    papers = papers_of(records)
    lines = [README_START, "",
             f"_Generated by `python -m reproduce.report --readme` from the committed `{profile}` records "
             "(full comparison: [`results/REPORT.md`](results/REPORT.md))._", ""]
    rows: list[dict[str, str]] = []
    for paper in papers:
        rows += headline_rows(paper, [r for _, r in records if r["paper"] == paper])
    lines += [markdown(rows, ["claim", "paper", "ours (model)", "status"]).rstrip("\n"), ""]
    lines += [f"| paper | machine | `{profile}` run time (sum of the experiments, min) |", "|---|---|---|"]
    for paper in papers:
        mine = [r for _, r in records if r["paper"] == paper]
        if mine:
            lines.append(f"| {title(paper)} | {_machine(mine)} | {_run_time(mine)} |")
        else:
            lines.append(f"| {title(paper)} | — | no `{profile}` record yet |")
    lines.append("")
    for paper in papers:
        for fig in _refs(paper).get("key_figures", []):
            exp, name, caption = fig["experiment"], fig["file"], fig["caption"]
            png = next((p.parent / name for p, r in sorted(records, key=lambda x: str(x[0]))
                        if r["paper"] == paper and r["experiment"] == exp and (p.parent / name).exists()), None)
            if png is not None:
                lines += [f"**{title(paper)}** — {caption}", "", f"![{title(paper)}: {caption}]({_link(png, base)})",
                          ""]
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(readme: Path, results: Path, profile: str = "cpu") -> None:
    """Replace the text between the README's result markers (markers kept, nothing else touched)."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0 or end < start or text.count(README_START) != 1 or text.count(README_END) != 1:
        raise SystemExit(f"{readme}: needs exactly one {README_START} ... {README_END} block, in that order")
    section = readme_section(results, profile, base=readme.parent)
    readme.write_text(text[:start] + section + text[end + len(README_END):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results", type=Path)
    ap.add_argument("--out", default=None, type=Path)
    ap.add_argument("--profile", default="cpu",
                    help="records of this profile only (default cpu, what REPORT.md and the README show); "
                         f"'{ALL_PROFILES}' for every profile")
    ap.add_argument("--readme", nargs="?", const=Path("README.md"), default=None, type=Path, metavar="README",
                    help="also refresh the results block of README (default README.md)")
    args = ap.parse_args(argv)
    if not args.results.is_dir():
        print(f"error: --results {args.results}: not a folder of records", file=sys.stderr)
        return 2
    if args.readme and args.profile == ALL_PROFILES:
        print("error: --profile: the README block shows one profile, not 'all'", file=sys.stderr)
        return 2
    out = args.out or args.results / "REPORT.md"
    _, problems = build(args.results, out, args.profile)
    print(f"report written: {out}")
    if args.readme:
        update_readme(args.readme, args.results, args.profile)
        print(f"{args.readme} results block refreshed")
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
