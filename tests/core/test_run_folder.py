"""`RunFolder` on its own: staging, publish, discard, history, resume state and the skip-if-current check
(the runner's use of it: tests/core/test_publish.py, test_stale_state.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from llm_efficiency_bench.core import env as env_mod
from llm_efficiency_bench.core.records import Record, read_record, write_record
from llm_efficiency_bench.core.run_folder import CHECKPOINT, FAILED, HISTORY, RunFolder, run_dir


def _staging_with_run(folder: RunFolder, value: float, created: str) -> Path:
    """A staging folder holding a finished run: a record listing a CSV in a sub-folder and a table, and a file
    it does not list."""
    staging = folder.new_staging()
    (staging / "sub").mkdir()
    (staging / "sub" / "rows.csv").write_text(f"v\n{value}\n")
    (staging / "table.md").write_text(f"| v |\n| {value} |\n")
    (staging / "comparison.md").write_text("unlisted, still part of the run")
    r = Record("p", "e", "cpu", created=created)
    r.add("v", value, "x", "none")
    r.artifacts = {"csv": ["sub/rows.csv"], "tables": ["table.md"]}
    write_record(staging, r)
    return staging


def test_publish_moves_the_earlier_run_whole_to_history_and_clears_the_resume_state(tmp_path):
    folder = RunFolder(run_dir(tmp_path, "p", "e", "cpu"))
    assert folder.path == tmp_path / "p" / "e" / "cpu" and folder.checkpoint_dir == folder.path / CHECKPOINT
    first = folder.publish(_staging_with_run(folder, 1.0, "2026-01-01T00:00:00+00:00"))
    sibling = folder.path / "model=other"  # a sweep job's own run folder
    sibling.mkdir()
    (sibling / "record.json").write_text("{}")
    folder.checkpoint_dir.mkdir()
    (folder.checkpoint_dir / "state.pt").write_text("resume")
    staging = _staging_with_run(folder, 2.0, "2026-01-02T00:00:00+00:00")
    assert folder.publish(staging) == first == folder.record_path
    old = folder.path / HISTORY / "2026-01-01T000000Z"
    assert sorted(p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()) == [
        "comparison.md", "record.json", "sub/rows.csv", "table.md"]
    assert read_record(old / "record.json")["metrics"]["v"]["value"] == 1.0
    assert read_record(first)["metrics"]["v"]["value"] == 2.0
    assert (folder.path / "sub/rows.csv").read_text() == "v\n2.0\n"
    assert not staging.exists() and not folder.checkpoint_dir.exists()
    assert (sibling / "record.json").read_text() == "{}" and not (sibling / HISTORY).exists()


def test_discard_keeps_the_published_run_and_the_resume_state(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.publish(_staging_with_run(folder, 1.0, "2026-01-01T00:00:00+00:00"))
    published = {p: p.read_bytes() for p in folder.path.rglob("*") if p.is_file()}
    folder.checkpoint_dir.mkdir()
    (folder.checkpoint_dir / "state.pt").write_text("resume")
    for value in (2.0, 3.0):  # the last failed run's output replaces the one before it
        staging = folder.new_staging()
        (staging / "rows.csv").write_text(str(value))
        assert folder.discard(staging) == folder.path / FAILED
    assert (folder.path / FAILED / "rows.csv").read_text() == "3.0"
    assert (folder.checkpoint_dir / "state.pt").read_text() == "resume"
    assert {p: p.read_bytes() for p in folder.path.rglob("*") if p.is_file() and FAILED not in p.parts
            and CHECKPOINT not in p.parts} == published


def test_new_staging_removes_only_the_stagings_of_dead_processes(tmp_path):
    folder = RunFolder(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = tmp_path / f".staging-{dead.pid}", tmp_path / ".staging-1"  # pid 1 is always alive
    for d in (stale, live):
        d.mkdir()
    staging = folder.new_staging()
    assert staging == tmp_path / f".staging-{os.getpid()}" and staging.is_dir()
    assert not stale.exists() and live.exists()


def test_a_record_that_cannot_be_read_is_archived_all_the_same(tmp_path):
    folder = RunFolder(tmp_path)
    folder.record_path.write_text('{"schema_version": 1, "paper": ')  # a torn write
    (tmp_path / "rows.csv").write_text("v")
    target = folder.archive()
    assert target is not None and target.parent == tmp_path / HISTORY and target.name.startswith("unrecorded-")
    assert sorted(p.name for p in target.iterdir()) == ["record.json", "rows.csv"]
    assert folder.archive() is None  # nothing published: nothing to move


def test_current_is_the_record_of_this_code_and_config_only(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path)
    config = {"seed": 0, "scale": {"sizes": {16: 1}}, "skip_if_current": True}  # a number-keyed mapping
    assert folder.current(config) is None  # nothing published
    r = Record("p", "e", "cpu", config=json.loads(json.dumps(config)), env={"code_hash": env_mod.code_hash()})
    write_record(tmp_path, r)
    assert folder.current(config) == folder.record_path
    assert folder.current({**config, "skip_if_current": False}) == folder.record_path  # a switch, not a setting
    assert folder.current({**config, "seed": 1}) is None
    monkeypatch.setattr(env_mod, "code_hash", lambda: "0123456789abcdef")
    assert folder.current(config) is None
    folder.record_path.write_text("{")
    assert folder.current(config) is None  # a corrupt record is never current
