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


from llm_efficiency_bench.core.paths import CONFIG_DIR, REPO_ROOT
from llm_efficiency_bench.core.records import read_records
from llm_efficiency_bench.core.references import load_references, tagged


def _first_comment(path: Path) -> str:
    """The first comment line of an experiment YAML after the `@package` line (its one-line summary)."""
    for line in path.read_text().splitlines():
        text = line.lstrip("# ").strip()
        if line.startswith("#") and text and not text.startswith("@package"):
            return text.split(": python -m")[0]
    return ""


def listing(paper: str, results: Path) -> str:
    """The text `--list` prints for `paper`."""
    exp_dir = CONFIG_DIR / paper / "experiment"
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


def list_if_asked(paper: str, argv: list[str] | None = None) -> None:
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
    print(listing(paper, results))
    raise SystemExit(0)
