"""Rebuild every table and figure from saved records, without rerunning anything.

    python -m reproduce.report [--results results] [--out results/REPORT.md] [--profile cpu] [--readme [README.md]]

REPORT.md opens with the verdict summary: per paper the claims counted by verdict (each claim judged on its
headline run, `headline_run` in the reference file), then every "not reproduced" and "not comparable" claim
with its reason (`why`). Then, per paper, the comparison paper | ours | delta | tolerance | verdict for every
claim of `references/<paper>.yaml` (the headline run first, other configurations under their run tag; a
claim with no record says so), and each record's own tables and figures.
Figures are redrawn from the record's CSVs by each experiment's drawer (`@experiment(figures=...)`, found
through the experiment YAML's `fn`: the code the run drew them with). A corrupt record, or a missing or corrupt CSV, is reported by name and skipped; it never
breaks the report for the others. `--readme` also rewrites the results block of the README (between its
markers, nothing else): the verdict summary, the headline claims, the run time of each experiment and
profile, and the key figures; and the speed-ratio block between the `bench:` markers when
`llm_efficiency_bench.cli.bench_record` is importable.

Only the records of `--profile` (default `cpu`) are reported, so a smoke or sweep run into `results/` never
puts smoke rows into the tracked REPORT.md or README. Papers, their titles, headline claims (`headline:`)
and key figures come from `references/<paper>.yaml`; a paper with records but no reference file is listed
after the others.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from llm_efficiency_bench.core.experiment import declared
from llm_efficiency_bench.core.records import read_records
from llm_efficiency_bench.core.references import (NEEDS_REASON, STATUSES, VERDICTS_TEXT, comparison_markdown, headline_run,
                                   load_references, reference_papers, run_tag, tagged, verdict_counts, verdicts)

ALL_PROFILES = "all"


def load_records(results: Path, profile: str = ALL_PROFILES) -> tuple[list[tuple[Path, dict[str, Any]]], list[str]]:
    """The readable records under `results` of `profile` (`all`: every profile), and one message per
    unreadable one (`llm_efficiency_bench.core.records.read_records`)."""
    records, problems = read_records(results)
    return [(p, r) for p, r in records if profile == ALL_PROFILES or r["profile"] == profile], problems


def profiles_found(results: Path) -> list[str]:
    """The profiles of the readable records under `results`."""
    return sorted({r["profile"] for _, r in read_records(results)[0]})


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


def claim_notes(records: list[tuple[Path, dict[str, Any]]]) -> dict[tuple[str, str], str]:
    """(paper, claim id) -> a note the experiment derives from a record's CSVs (`@experiment(notes=...)`,
    optional), e.g. which FLOPs convention a number uses."""
    notes: dict[tuple[str, str], str] = {}
    for path, rec in records:
        spec = declared(rec["paper"], rec["experiment"])
        fn = spec.notes if spec is not None else None
        if fn is None or run_tag(rec):
            continue
        try:
            notes.update({(rec["paper"], k): v for k, v in fn(path.parent, rec).items()})
        except Exception:  # a note is an extra; a broken CSV is reported by the figures already
            continue
    return notes


def _reason(row: dict[str, Any], paper: str, notes: dict[tuple[str, str], str]) -> str:
    """The row's one-line reason (not reproduced / not comparable) or note (the claim's `note`, and any
    note derived from the record)."""
    if row["status"] in NEEDS_REASON:
        return row.get("why") or f"no reason recorded (add `why` to references/{paper}.yaml)"
    return "; ".join(t for t in (row.get("note"), notes.get((paper, row["id"]))) if t)


def verdict_summary(records: list[tuple[Path, dict[str, Any]]], profile: str, level: str = "##") -> list[str]:
    """Markdown lines: the verdict words defined, the claims counted by verdict per paper (each claim on its
    headline run), then every not-reproduced and not-comparable claim with its reason."""
    from llm_efficiency_bench.core.tables import markdown

    which = f"`{profile}` " if profile != ALL_PROFILES else ""
    lines = [f"{level} Verdict summary ({which}records)", "", VERDICTS_TEXT, ""]
    counts, reasons = [], []
    for paper in papers_of(records):
        try:
            refs = load_references(paper)
        except FileNotFoundError:
            continue
        rows = verdicts(refs, [r for _, r in records if r["paper"] == paper],
                        None if profile == ALL_PROFILES else profile)
        counts.append({"paper": title(paper), **verdict_counts(rows), "claims": len(rows)})
        reasons += [{"paper": title(paper), "claim": r["claim"], "source": r["source"],
                     "ours": r["ours"], "verdict": r["status"], "why": _reason(r, paper, {})}
                    for r in rows if r["status"] in NEEDS_REASON]
    cols = ["paper", *STATUSES, "claims"]
    lines += [markdown(counts, cols).rstrip("\n"), ""]
    if reasons:
        lines += ["Not reproduced and not comparable, with the reason:", "",
                  markdown(reasons, ["paper", "claim", "source", "ours", "verdict", "why"], digits=3).rstrip("\n"),
                  ""]
    return lines


def rebuild_figures(draw: Any | None, run_dir: Path, rec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Redraw one record's figures with the experiment's drawer (`@experiment(figures=...)`); returns (figure
    files relative to run_dir, problems)."""
    problems: list[str] = []
    drawn: list[str] = []
    if draw is not None:
        try:
            drawn = [str(Path(p).relative_to(run_dir)) for p in draw(run_dir, rec)]
        except Exception as e:  # a broken CSV must not break the other records
            from llm_efficiency_bench.core.plots import FigureDataError

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
             "nothing was rerun; figures redrawn from the records' CSVs. Each claim is judged on its headline "
             "run (`headline_run` in `references/<paper>.yaml`); rows of other configurations follow it, "
             "named by their run tag.", ""]
    lines += verdict_summary(records, profile)
    if problems:
        lines += ["## Records that could not be read", ""] + [f"- {p}" for p in problems] + [""]
    for paper in papers_of(records):
        mine = [(p, r) for p, r in records if r["paper"] == paper]
        lines += [f"## {paper}", ""]
        try:
            lines += [comparison_markdown(paper, [r for _, r in mine]), ""]
        except FileNotFoundError:
            lines += ["_(no reference file)_", ""]
        for path, rec in sorted(mine, key=lambda x: (x[1]["experiment"], x[1]["profile"], run_tag(x[1]) or "")):
            run_dir = path.parent
            minutes = (rec.get("duration_s") or 0) / 60
            env = rec.get("env", {})
            lines += [f"### {tagged(rec['experiment'], rec)} / {rec['profile']}", "",
                      f"{env.get('device_name', '?')}, torch {env.get('packages', {}).get('torch', '?')}, "
                      f"git {str(env.get('git_sha'))[:10]}, {minutes:.1f} min, created {rec.get('created')}", ""]
            spec = declared(paper, rec["experiment"])
            drawn, trouble = rebuild_figures(spec.figures if spec is not None else None, run_dir, rec)
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
    """Four significant digits, no trailing zeros (955.2, 0.25, 62.96)."""
    return f"{x:.4g}"


def headline_claims(paper: str) -> list[dict[str, Any]]:
    """The claims the README leads with: those with a `headline: <rank>` in the reference file, by rank."""
    return sorted((c for c in _refs(paper).get("claims", []) if c.get("headline")), key=lambda c: int(c["headline"]))


def headline_rows(paper: str, records: list[dict[str, Any]],
                  notes: dict[tuple[str, str], str] | None = None) -> list[dict[str, str]]:
    """One row per headline claim of `paper`, judged on the claim's headline run only (whatever the folder
    order): claim | paper | ours (model) | verdict | why / note."""
    refs = _refs(paper)
    rows = []
    for c in headline_claims(paper):
        where = re.split(r"[;(]", str(c["source"]))[0].strip()  # "Fig. 5 (curves only; ...)" -> "Fig. 5"
        (row,) = verdicts({**refs, "claims": [c]}, records)
        rec = next((r for r in records if r.get("experiment") == c["experiment"]
                    and run_tag(r) == headline_run(c, refs)), None)
        ours = "—" if row["ours"] is None or rec is None else f"{_num(row['ours'])} ({_model(rec)})"
        rows.append({"claim": f"**{title(paper)}**, {where}: {c['claim']}",
                     "paper": f"{_num(float(c['paper_value']))} ({c.get('paper_model', '?')})",
                     "ours (model)": ours, "verdict": row["status"],
                     "why / note": _reason(row, paper, notes or {})})
    return rows


def _machine(recs: list[dict[str, Any]]) -> str:
    seen = dict.fromkeys(f"{r.get('env', {}).get('device_name', '?')}, torch "
                         f"{r.get('env', {}).get('packages', {}).get('torch', '?')}" for r in recs)
    return "; ".join(seen)


def headline_tags(paper: str) -> set[str | None]:
    """The run tags that answer some claim of `paper` (None: the untagged record)."""
    refs = _refs(paper)
    return {headline_run(c, refs) for c in refs.get("claims", [])} | {None}


def run_time_rows(records: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per headline record: paper | experiment | profile | run time (min) | machine, from the
    record's own `duration_s` (every leg of a resumed run)."""
    rows = []
    for paper in papers_of(records):
        tags = headline_tags(paper)
        mine = sorted((r for _, r in records if r["paper"] == paper and run_tag(r) in tags),
                      key=lambda r: (-(r.get("duration_s") or 0), r["experiment"]))
        rows += [{"paper": title(paper), "experiment": tagged(r["experiment"], r), "profile": r["profile"],
                  "run time (min)": round((r.get("duration_s") or 0) / 60, 1), "machine": _machine([r])}
                 for r in mine]
    return rows


def _run_time(recs: list[dict[str, Any]]) -> str:
    """'123.4 min: ppl_4m 100.2, ...' (longest first), from the records' duration_s."""
    mins = sorted(((r.get("duration_s") or 0) / 60, tagged(r["experiment"], r)) for r in recs)[::-1]
    return f"{sum(m for m, _ in mins):.1f} min: " + ", ".join(f"{e} {m:.1f}" for m, e in mins)


def key_figure(records: list[tuple[Path, dict[str, Any]]], paper: str, fig: dict[str, Any]) -> Path | None:
    """The PNG of a `key_figures` entry from its headline record (`headline_run` of the entry, default the
    untagged record), never from another configuration that happens to sort first."""
    tag = headline_run(fig)
    return next((p.parent / fig["file"] for p, r in records if r["paper"] == paper
                 and r["experiment"] == fig["experiment"] and run_tag(r) == tag
                 and (p.parent / fig["file"]).exists()), None)


def readme_section(results: Path, profile: str = "cpu", base: Path = Path(".")) -> str:
    """The README's results block, from the `profile` records only: the verdict summary, the headline
    claims, the run time of each experiment and the key figures (links relative to the folder `base`)."""
    from llm_efficiency_bench.core.tables import markdown

    records = load_records(results, profile)[0]
    papers = papers_of(records)
    notes = claim_notes(records)
    lines = [README_START, "",
             f"_Generated by `python -m reproduce.report --readme` from the committed `{profile}` records; "
             "the full comparison, every configuration and every figure: "
             "[`results/REPORT.md`](results/REPORT.md)._", ""]
    lines += verdict_summary(records, profile, level="###")
    rows: list[dict[str, str]] = []
    for paper in papers:
        rows += headline_rows(paper, [r for _, r in records if r["paper"] == paper], notes)
    lines += ["### Headline claims", "",
              markdown(rows, ["claim", "paper", "ours (model)", "verdict", "why / note"]).rstrip("\n"), ""]
    lines += ["### Run time", "", "Each experiment's own record (`duration_s`, every leg of a resumed run); "
              "AdaptiveStep's `bon`, `cost` and `tvd` reuse the cached pipeline stages, so a first run "
              "also pays for the stages it builds.", ""]
    lines += [markdown(run_time_rows(records), ["paper", "experiment", "profile", "run time (min)", "machine"],
                       digits=1).rstrip("\n"), ""]
    lines += ["### Key figures", ""]
    for paper in papers:
        for fig in _refs(paper).get("key_figures", []):
            png = key_figure(records, paper, fig)
            if png is not None:
                caption = fig["caption"]
                lines += [f"**{title(paper)}** — {caption}", "", f"![{title(paper)}: {caption}]({_link(png, base)})",
                          ""]
    lines.append(README_END)
    return "\n".join(lines)


BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"


def bench_section(results: Path) -> str | None:
    """The speed-ratio block (`llm_efficiency_bench.cli.bench_record.bench_table_markdown`), or None when that module is
    not importable."""
    try:
        from llm_efficiency_bench.cli.bench_record import bench_table_markdown
    except ImportError:
        return None
    return "\n".join([BENCH_START, "", bench_table_markdown(results).rstrip("\n"), "", BENCH_END])


def _replace_block(text: str, start_marker: str, end_marker: str, block: str, readme: Path) -> str:
    start, end = text.find(start_marker), text.find(end_marker)
    if (start < 0 or end < 0 or end < start or text.count(start_marker) != 1
            or text.count(end_marker) != 1):
        raise SystemExit(f"{readme}: needs exactly one {start_marker} ... {end_marker} block, in that order")
    return text[:start] + block + text[end + len(end_marker):]


def update_readme(readme: Path, results: Path, profile: str = "cpu") -> None:
    """Replace the text between the README's result markers, and between its bench markers when it has
    them and `llm_efficiency_bench.cli.bench_record` is importable (markers kept, nothing else touched)."""
    text = readme.read_text()
    text = _replace_block(text, README_START, README_END, readme_section(results, profile, base=readme.parent),
                          readme)
    if BENCH_START in text or BENCH_END in text:
        bench = bench_section(results)
        if bench is None:
            print("note: llm_efficiency_bench.cli.bench_record is not importable; the README's speed-ratio block is left as it is")
        else:
            text = _replace_block(text, BENCH_START, BENCH_END, bench, readme)
    readme.write_text(text)


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
    found = profiles_found(args.results)
    if args.profile != ALL_PROFILES and args.profile not in found:
        hint = (f"found profiles: {', '.join(found)}; pass --profile <one of them> (or --profile {ALL_PROFILES})"
                if found else "no readable record.json under it")
        print(f"note: no `{args.profile}` records under {args.results}; {hint}", file=sys.stderr)
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
