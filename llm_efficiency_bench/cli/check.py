"""Regression check: the newest records against committed baselines, metric by metric.

    python -m reproduce.check                       # results/ vs the same files at git HEAD
    python -m reproduce.check --baseline ref_dir    # results/ vs another results folder (e.g. GPU baselines)
    python -m reproduce.check --profile cpu
    python -m reproduce.check --results my_runs --only-present   # only the experiments in my_runs

Prints a table of what moved and exits 1 if any metric regressed, if any value cannot be vouched for (NaN
or infinite, missing, a changed unit or direction, an empty `metrics` block, a record in another
profile's folder), or if a new record is corrupt or missing (a baseline record with no readable
counterpart), with one `error:` line per problem naming the record file and the metric (see
llm_efficiency_bench/core/regress.py). `--only-present` compares only the records found under `--results` and lists the
baseline records it skipped; a `--results` folder outside the repository is then compared with the
committed `results/` at `--rev`. A `--results` or `--baseline` that is not a readable folder (or, for the
git baseline, not inside the repository) is a usage error: one line naming the option, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from llm_efficiency_bench.core.paths import REPO_ROOT
from llm_efficiency_bench.core.records import RecordError, check_record, read_records
from llm_efficiency_bench.core.regress import compare_sets, folder_problem, load_rules
from llm_efficiency_bench.core.tables import markdown


class UsageError(Exception):
    """A bad command-line option; the message starts with the option's name."""


def _load_dir(root: Path, profile: str | None, option: str) -> tuple[dict, list[str]]:
    """Records under `root` keyed by their path relative to it, and one message per unreadable one."""
    if not root.is_dir():
        raise UsageError(f"{option} {root}: not a folder of records")
    records, problems = read_records(root)
    # A record whose profile disagrees with its folder is kept under either name, so the gate sees it.
    out = {str(p.relative_to(root)): r for p, r in records
           if profile is None or profile in (r["profile"], *p.relative_to(root).parts[:-1])}
    return out, problems


def _load_git(root: Path, rev: str, profile: str | None, committed: bool = False) -> tuple[dict, list[str]]:
    """Records of `root` as committed at `rev`; with `committed`, a `root` outside the repository is
    compared with the repository's `results/` instead."""
    out, problems = {}, []
    try:
        rel_root = root.resolve().relative_to(REPO_ROOT)
    except ValueError:
        if not committed:
            raise UsageError(f"--results {root}: outside the repository {REPO_ROOT}, so it has no git baseline; "
                             "give --baseline <folder> (or --only-present to compare with the committed "
                             "results/)") from None
        rel_root = Path("results")
    ls = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "--", str(rel_root)], cwd=REPO_ROOT,
                        capture_output=True, text=True)
    if ls.returncode != 0:
        raise UsageError(f"--rev {rev}: {ls.stderr.strip().splitlines()[-1] if ls.stderr.strip() else 'unknown'}")
    for name in ls.stdout.split():
        if not name.endswith("/record.json") or "/history/" in name:
            continue
        blob = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=REPO_ROOT, capture_output=True, text=True)
        try:
            rec = check_record(json.loads(blob.stdout), f"{rev}:{name}")
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
    ap.add_argument("--only-present", action="store_true",
                    help="compare only the records under --results (a baseline record with none is skipped, "
                         "and listed), e.g. the few experiments you ran")
    args = ap.parse_args(argv)
    try:
        new, bad_new = _load_dir(args.results, args.profile, "--results")
        if args.baseline:
            old, bad_old = _load_dir(args.baseline, args.profile, "--baseline")
        else:
            old, bad_old = _load_git(args.results, args.rev, args.profile, committed=args.only_present)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in bad_old:
        print(f"warning: baseline {p}", file=sys.stderr)
    skipped: list[str] = []
    if args.only_present:
        # A corrupt new record stays compared (it fails as corrupt): only records never run are skipped.
        corrupt = {k for k in old if any(m.startswith(f"{args.results / k}:") for m in bad_new)}
        skipped = sorted(k for k in old if k not in new and k not in corrupt)
        old = {k: r for k, r in old.items() if k not in skipped}
    changes = compare_sets(old, new, load_rules())
    # A baseline record with no readable new record: corrupt (named below) or missing. Both fail the gate.
    missing = sorted(args.results / k for k in old if k not in new)
    misplaced = [f"{args.results / k}: {why}" for k, r in sorted(new.items())
                 if (why := folder_problem((args.results / k).resolve(), r))]
    shown = [c.row() for c in changes if (args.all or c.verdict != "same") and c.verdict != "record only in baseline"]
    print(f"compared {len(new)} record(s) with {len(old)} baseline record(s): "
          f"{sum(c.verdict == 'regressed' for c in changes)} regressed, "
          f"{sum(c.verdict == 'invalid' for c in changes)} invalid, "
          f"{sum(c.verdict == 'improved' for c in changes)} improved, "
          f"{sum(c.verdict == 'same' for c in changes)} unchanged")
    if skipped:
        print(f"skipped {len(skipped)} baseline record(s) with no run under {args.results} (--only-present): "
              + ", ".join(str(Path(k).parent) for k in skipped))
    if shown:
        print(markdown(shown, digits=4))
    for c in changes:
        if c.verdict == "invalid":
            what = f"metric {c.metric!r}: " if c.metric != "*" else ""
            print(f"error: {args.results / c.path}: {what}{c.problem}", file=sys.stderr)
    for line in misplaced:
        print(f"error: {line}", file=sys.stderr)
    for p in bad_new:
        print(f"error: corrupt record {p}", file=sys.stderr)
    for p in missing:
        if not any(msg.startswith(f"{p}:") for msg in bad_new):  # a corrupt one is named above
            print(f"error: missing record {p} (in the baseline, not in --results)", file=sys.stderr)
    failed = any(c.failed for c in changes) or bool(misplaced) or bool(bad_new) or bool(missing)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
