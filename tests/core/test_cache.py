"""The build-once cache: concurrent builders, resume from a partial build, rerun, stable keys."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

from llm_efficiency_bench.core.cache import CacheEntry, config_key


def _build_slow(root: str, out: str, tag: str) -> None:
    def builder(work: Path) -> dict:
        (work / "weights.txt").write_text(f"built by {tag}")
        time.sleep(0.5)  # long enough that the other process arrives while this one builds
        Path(out, f"built-{tag}").write_text("1")
        return {"by": tag}

    entry = CacheEntry("models", "m", {"a": 1}, root=Path(root))
    folder = entry.get_or_build(builder)
    Path(out, f"result-{tag}").write_text((folder / "weights.txt").read_text())


def test_two_processes_build_one_valid_entry(tmp_path):
    root, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_build_slow, args=(str(root), str(out), t)) for t in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    built = sorted(p.name for p in out.glob("built-*"))
    assert len(built) == 1, f"both processes built the entry: {built}"
    entries = [p for p in (root / "models").iterdir() if p.is_dir()]
    assert [p.name for p in entries] == [f"m-{config_key({'a': 1})}"]  # no partial or tmp folder left
    info = json.loads((entries[0] / "done.json").read_text())
    winner = info["by"]
    # both processes read the same, complete entry
    assert {p.read_text() for p in out.glob("result-*")} == {f"built by {winner}"}


def test_interrupted_build_resumes_from_partial(tmp_path):
    entry = CacheEntry("stage", "s", {"k": 2}, root=tmp_path)

    def failing(work: Path) -> dict:
        (work / "part1").write_text("x")
        raise KeyboardInterrupt

    try:
        entry.get_or_build(failing)
    except KeyboardInterrupt:
        pass
    assert not entry.done and (entry.partial / "part1").exists()
    seen = []

    def resuming(work: Path) -> dict:
        seen.append((work / "part1").exists())
        return {}

    entry.get_or_build(resuming)
    assert seen == [True] and entry.done and not entry.partial.exists()


def test_rerun_rebuilds_once_per_process(tmp_path):
    calls = []
    CacheEntry("stage", "r", {"k": 3}, root=tmp_path).get_or_build(lambda w: calls.append(1) or {})
    e = CacheEntry("stage", "r", {"k": 3}, rerun=True, root=tmp_path)
    assert not e.done
    e.get_or_build(lambda w: calls.append(2) or {})
    CacheEntry("stage", "r", {"k": 3}, rerun=True, root=tmp_path).get_or_build(lambda w: calls.append(3) or {})
    assert calls == [1, 2]


def test_config_key_same_for_omegaconf_and_plain():
    from omegaconf import OmegaConf

    d = {"b": [1, 2], "a": {"x": 0.5}}
    assert config_key(OmegaConf.create(d)) == config_key(d) != config_key({**d, "c": 1})


def test_interrupted_rerun_resumes_its_own_partial_build(tmp_path, monkeypatch):
    """`pipeline.rerun=[stage]` started again after an interruption keeps the partial progress of that rerun
    (same code); a rerun by other code starts over."""
    from llm_efficiency_bench.core import cache as cache_mod
    from llm_efficiency_bench.core import env

    monkeypatch.setattr(env, "code_hash", lambda: "code-A")
    CacheEntry("stage", "p", {"k": 4}, root=tmp_path).get_or_build(lambda w: {})  # published by an earlier run

    def interrupted(work: Path) -> dict:
        (work / "batch-0").write_text("done")
        raise KeyboardInterrupt

    e = CacheEntry("stage", "p", {"k": 4}, rerun=True, root=tmp_path)
    assert not e.done
    try:
        e.get_or_build(interrupted)
    except KeyboardInterrupt:
        pass
    cache_mod._CLEARED.clear()  # a new process runs the same command
    seen = []
    e = CacheEntry("stage", "p", {"k": 4}, rerun=True, root=tmp_path)
    e.get_or_build(lambda w: seen.append((w / "batch-0").exists()) or {})
    assert seen == [True] and e.done

    # the same after an interruption, but the code changed in between: the partial build is not resumed
    cache_mod._CLEARED.clear()
    e = CacheEntry("stage", "p", {"k": 4}, rerun=True, root=tmp_path)
    try:
        e.get_or_build(interrupted)
    except KeyboardInterrupt:
        pass
    cache_mod._CLEARED.clear()
    monkeypatch.setattr(env, "code_hash", lambda: "code-B")
    seen.clear()
    CacheEntry("stage", "p", {"k": 4}, rerun=True, root=tmp_path).get_or_build(
        lambda w: seen.append((w / "batch-0").exists()) or {})
    assert seen == [False]
