"""Regression check: the newest records against committed baselines, metric by metric.

    python -m reproduce.check                       # results/ vs the same files at git HEAD
    python -m reproduce.check --baseline ref_dir    # results/ vs another results folder (e.g. GPU baselines)
    python -m reproduce.check --profile cpu

Prints a table of what moved and exits 1 if any metric regressed (see bench/core/regress.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.core.paths import REPO_ROOT
from bench.core.records import RecordError, find_records, read_record, validate
from bench.core.regress import compare_sets, load_overrides
from bench.core.tables import markdown


def _load_dir(root: Path, profile: str | None) -> tuple[dict, list[str]]:
    out, problems = {}, []
    for p in find_records(root):
        try:
            rec = read_record(p)
        except RecordError as e:
            problems.append(str(e))
            continue
        if profile is None or rec["profile"] == profile:
            out[str(p.relative_to(root))] = rec
    return out, problems


def _load_git(root: Path, rev: str, profile: str | None) -> tuple[dict, list[str]]:
    out, problems = {}, []
    rel_root = root.resolve().relative_to(REPO_ROOT)
    ls = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "--", str(rel_root)], cwd=REPO_ROOT,
                        capture_output=True, text=True)
    for name in ls.stdout.split():
        if not name.endswith("/record.json") or "/history/" in name:
            continue
        blob = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=REPO_ROOT, capture_output=True, text=True)
        try:
            rec = validate(json.loads(blob.stdout), f"{rev}:{name}")
        except (json.JSONDecodeError, RecordError) as e:
            problems.append(f"{rev}:{name}: {e}")
            continue
        if profile is None or rec["profile"] == profile:
            out[str(Path(name).relative_to(rel_root))] = rec
    return out, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    ap.add_argument("--baseline", type=Path, default=None, help="a results folder; default: git --rev")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--all", action="store_true", help="also list unchanged metrics")
    args = ap.parse_args(argv)
    new, p1 = _load_dir(args.results, args.profile)
    old, p2 = _load_dir(args.baseline, args.profile) if args.baseline else _load_git(args.results, args.rev, args.profile)
    for p in p1 + p2:
        print(f"warning: {p}", file=sys.stderr)
    changes = compare_sets(old, new, load_overrides())
    shown = [c.row() for c in changes if args.all or c.verdict != "same"]
    print(f"compared {len(new)} record(s) with {len(old)} baseline record(s): "
          f"{sum(c.verdict == 'regressed' for c in changes)} regressed, "
          f"{sum(c.verdict == 'improved' for c in changes)} improved, "
          f"{sum(c.verdict == 'same' for c in changes)} unchanged")
    if shown:
        print(markdown(shown, digits=4))
    return 1 if any(c.verdict == "regressed" for c in changes) else 0


if __name__ == "__main__":
    sys.exit(main())
