"""A run folder `results/<paper>/<experiment>/<profile>[/<run_tag>]/` and its life: staging, publish, discard.

One run writes into a staging folder inside its run folder and publishes only when it finishes: the published
run moves whole to `history/<its created stamp>/`, the staging folder's files move in (`record.json` last), and the
resume state `.checkpoint/` is cleared. A failed run publishes nothing; its partial output is kept in
`.failed-run/` and its resume state stays for the next start. The layout of a run folder:

    record.json, tables, CSVs, figures   the published run (`RunFolder.run_files`)
    history/<created stamp>/             earlier published runs, same relative paths
    .staging-<pid>/                      the run in progress of process <pid>
    .failed-run/                         the partial output of the last failed run
    .checkpoint/                         resume state of the unpublished run
    <run_tag>/                           a sweep job's own run folder (never part of this run)

The record inside (`record.json`) and its schema are `llm_efficiency_bench.core.records`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_efficiency_bench.core import env as env_mod
from llm_efficiency_bench.core.records import Record, RecordError, now_iso, read_record, write_record

RECORD = "record.json"
STAGING_PREFIX = ".staging-"
FAILED = ".failed-run"  # the partial output of the last failed run in this folder (replaced each time)
CHECKPOINT = ".checkpoint"
HISTORY = "history"


def run_dir(results_dir: str | Path, paper: str, experiment: str, profile: str) -> Path:
    """`results/<paper>/<experiment>/<profile>/`."""
    return Path(results_dir) / paper / experiment / profile


@dataclass(frozen=True)
class RunFolder:
    """The run folder at `path`: its staging folders, the published run, its resume state and its history.

    Args:
        path: the run folder (created by `new_staging`, not by the constructor).
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    @property
    def checkpoint_dir(self) -> Path:
        """Resume state lives in the run folder itself, so it survives a failed or interrupted run."""
        return self.path / CHECKPOINT

    def current(self, config: dict[str, Any]) -> Path | None:
        """The published record when it was made by this code (`env.code_hash`) from this resolved `config`
        (plain data, as the record stores it), else None: what `skip_if_current` skips."""
        try:
            rec = read_record(self.record_path) if self.record_path.exists() else None
        except RecordError:
            return None
        if rec is None or rec.get("env", {}).get("code_hash") != env_mod.code_hash():
            return None
        # Compared as JSON reads it back (a mapping keyed by numbers has string keys in the record).
        now = json.loads(json.dumps(config))
        return self.record_path if _comparable(rec.get("config") or {}) == _comparable(now) else None

    def new_staging(self) -> Path:
        """A fresh staging folder `<path>/.staging-<pid>/` for one run; stagings left by dead processes
        (a kill -9) are removed."""
        self.path.mkdir(parents=True, exist_ok=True)
        for old in self.path.glob(STAGING_PREFIX + "*"):
            pid = old.name[len(STAGING_PREFIX):]
            if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
                shutil.rmtree(old, ignore_errors=True)
        staging = self.path / f"{STAGING_PREFIX}{os.getpid()}"
        staging.mkdir()
        return staging

    def publish(self, staging: Path) -> Path:
        """Publish a finished run: the earlier run moves to `history/`, then every file of the staging folder
        moves in, the record last (a reader never sees the new record beside the old CSVs), and the resume
        state is cleared. Returns the record path."""
        if self.record_path.exists() or self.run_files():
            self.archive()
        files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: p.name == RECORD)
        for f in files:
            dest = self.path / f.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
        shutil.rmtree(staging, ignore_errors=True)
        # The resume state belongs to the run just published: kept, a rerun would "resume" at 100% and
        # republish these numbers (and count these seconds) instead of measuring again.
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        return self.record_path

    def discard(self, staging: Path) -> Path:
        """A failed run publishes nothing: its partial output is kept as `<path>/.failed-run/` (the previous
        failed run's is replaced) for inspection; the published run and the resume state are untouched."""
        failed = self.path / FAILED
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(staging, failed)
        return failed

    def run_files(self) -> list[Path]:
        """The files of the published run: its record, the artifacts it lists, and every other plain top-level
        file. Hidden entries (checkpoints, staging), `history/` and sub-folders (the sweep jobs beside it,
        `run_tag`) belong to other runs and are never included."""
        files = [p for p in self.path.iterdir() if p.is_file() and not p.name.startswith(".")]
        try:
            arts = json.loads(self.record_path.read_text()).get("artifacts") or {}
        except (OSError, ValueError, AttributeError):
            arts = {}
        for rel in (r for lst in arts.values() if isinstance(lst, list) for r in lst):
            p = self.path / str(rel)
            if p.is_file() and ".." not in Path(rel).parts and p not in files:
                files.append(p)
        return files

    def write_record(self, record: Record) -> Path:
        """Write the record into this folder, the run already published there moved to `history/` first."""
        if (self.path / "record.json").exists():
            self.archive()
        return write_record(self.path, record)

    def archive(self) -> Path | None:
        """Move the published run to `history/<its created stamp>/` (same relative paths); None when there is
        none. A record that cannot be read is archived all the same, under the time of archiving."""
        files = self.run_files()
        if not files:
            return None
        try:
            created = json.loads(self.record_path.read_text()).get("created", "")
        except (OSError, ValueError, AttributeError):
            created = ""
        stamp = (created or f"unrecorded-{now_iso()}").replace(":", "").replace("+0000", "Z")
        target = self.path / HISTORY / stamp
        n = 1
        while target.exists():
            target = self.path / HISTORY / f"{stamp}-{n}"
            n += 1
        for f in files:
            dest = target / f.relative_to(self.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(f, dest)
        print(f"[records] earlier run kept as {target}")
        return target


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config minus the switches that do not change what a run measures."""
    return {k: v for k, v in config.items() if k != "skip_if_current"}


def _alive(pid: int) -> bool:
    """Whether process `pid` exists (one of another user counts: its staging is not ours to remove)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
