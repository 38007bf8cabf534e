"""`python -m reproduce.<paper> --list`: the paper's experiments, the claims each answers and what each has
cost per profile, from the saved records.

    python -m reproduce.streaming_llm --list [--results <dir>]

An experiment is a file `configs/<paper>/experiment/<name>.yaml`; its claims are those of
`references/<paper>.yaml` that name it; its cost is the `duration_s` of each record under the results folder
(default `results/`), one line per profile and run tag. Nothing is composed, loaded or run.
"""

from __future__ import annotations

import sys
from pathlib import Path


from llm_efficiency_bench.core.paths import REPO_ROOT, config_dir_of, papers
from llm_efficiency_bench.core.records import read_records
from llm_efficiency_bench.core.references import load_references, tagged


def _first_comment(path: Path) -> str:
    """The first comment line of an experiment YAML after the `@package` line (its one-line summary)."""
    for line in path.read_text().splitlines():
        text = line.lstrip("# ").strip()
        if line.startswith("#") and text and not text.startswith("@package"):
            return text.split(": python -m")[0]
    return ""


def run_order(paper: str, config_dir: Path | None = None) -> list[str]:
    """The experiments `make reproduce` runs for `paper`, in order: those whose YAML gives `run_order`."""
    import yaml

    found = []
    for path in sorted(((config_dir or config_dir_of(paper)) / paper / "experiment").glob("*.yaml")):
        order = ((yaml.safe_load(path.read_text()) or {}).get("experiment") or {}).get("run_order")
        if order is not None:
            found.append((order, path.stem))
    return [name for _, name in sorted(found)]


def listing(paper: str, results: Path, config_dir: Path | None = None) -> str:
    """The text `--list` prints for `paper`."""
    exp_dir = (config_dir or config_dir_of(paper)) / paper / "experiment"
    names = sorted(p.stem for p in exp_dir.glob("*.yaml"))
    try:
        claims = load_references(paper)["claims"]
    except FileNotFoundError:
        claims = []
    records = [r for _, r in read_records(results)[0] if r["paper"] == paper] if results.is_dir() else []
    lines = [f"{paper}: {len(names)} experiments; run one with "
             f"`python -m reproduce.{paper} experiment=<name> profile=<smoke|cpu|paper>`", ""]
    for name in names:
        ids = [c["id"] for c in claims if c["experiment"] == name]
        lines.append(f"{name}: {_first_comment(exp_dir / f'{name}.yaml')}")
        lines.append(f"  claims ({len(ids)}): {', '.join(ids) if ids else '—'}")
        mine = sorted((r for r in records if r["experiment"] == name),
                      key=lambda r: (r["profile"], tagged("", r)))
        for r in mine:
            device = (r.get("env") or {}).get("device_name", "?")
            lines.append(f"  measured: {tagged(r['profile'], r)} {(r.get('duration_s') or 0) / 60:.1f} min on {device}")
        if not mine:
            lines.append(f"  measured: no record under {results}")
    return "\n".join(lines)


def list_if_asked(paper: str, argv: list[str] | None = None, config_dir: Path | None = None) -> None:
    """Print the listing and exit 0 when the command line asks for `--list` (before Hydra sees it)."""
    argv = sys.argv[1:] if argv is None else argv
    if "--list" not in argv:
        return
    results = REPO_ROOT / "results"
    if "--results" in argv:
        i = argv.index("--results")
        if i + 1 >= len(argv):
            print("error: --results needs a folder", file=sys.stderr)
            raise SystemExit(2)
        results = Path(argv[i + 1])
    print(listing(paper, results, config_dir))
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """`python -m llm_efficiency_bench.cli.listing --papers | --order <paper>` (what the Makefile reads)."""
    import argparse

    ap = argparse.ArgumentParser(description="The papers and the experiments `make reproduce` runs, in order.")
    ap.add_argument("--papers", action="store_true", help="print the papers, one per line")
    ap.add_argument("--order", metavar="PAPER", help="print PAPER's experiments in their run order")
    a = ap.parse_args(argv)
    if a.order and a.order not in papers():
        print(f"error: --order {a.order}: no such paper; papers: {', '.join(papers())}", file=sys.stderr)
        return 2
    print("\n".join(papers() if a.papers or not a.order else run_order(a.order)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
