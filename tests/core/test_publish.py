"""A run folder is published whole, a failed run publishes nothing, and `skip_if_current` resumes
`make reproduce`."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from llm_efficiency_bench.core import env as env_mod, runner
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.records import read_record
from tests.conftest import REPO, compose
from tests.conftest import patch_experiment

KEY = ("streaming_llm", "ppl_cache")  # a real experiment slot (its config); its function is replaced by fakes


def _cfg(tmp_path, *extra):
    return compose("streaming_llm", ["experiment=ppl_cache", "profile=smoke", f"results_dir={tmp_path}", *extra])


def _fake(value: float, fail: bool = False, calls: list | None = None):
    """An experiment writing a CSV, a table, a figure file and a checkpoint, then (optionally) failing."""
    def fn(ctx):
        if calls is not None:
            calls.append(value)
        ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (ctx.checkpoint_dir / "state.pt").write_text(f"resume state {value}")
        ctx.csv("rows", [{"v": value}])
        ctx.table("table", "T", [{"v": value}])
        (ctx.out_dir / "fig.png").write_bytes(b"png %f" % value)
        ctx.figures([ctx.out_dir / "fig.png"])
        if fail:
            raise RuntimeError("boom in the middle of the run")
        ctx.metric("v", value, "x", "none")
    return fn


@pytest.fixture
def fake_slot(monkeypatch):
    """Replace the experiment the runner resolves for KEY (without importing the real experiment modules)."""
    def use(fn):
        patch_experiment(monkeypatch, fn)
    return use


def _folder(tmp_path):
    return tmp_path / "streaming_llm" / "ppl_cache" / "smoke"


def test_failed_rerun_leaves_the_published_run_whole(tmp_path, fake_slot):
    fake_slot(_fake(1.0))
    path = runner.run("streaming_llm", _cfg(tmp_path))
    before = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    assert {"record.json", "rows.csv", "table.md", "table.csv", "fig.png"} <= set(before)
    fake_slot(_fake(2.0, fail=True))
    with pytest.raises(RuntimeError, match="boom"):
        runner.run("streaming_llm", _cfg(tmp_path))
    after = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    assert after == before  # no new CSV or table beside the old record
    failed = path.parent / ".failed-run"
    assert (failed / "rows.csv").read_text().strip().endswith("2.0") and not (failed / "record.json").exists()
    assert (path.parent / ".checkpoint" / "state.pt").read_text() == "resume state 2.0"  # resume state survives
    assert not list(path.parent.glob(".staging-*")) and not (path.parent / "history").exists()


def test_invalid_setting_stops_before_anything_is_written(tmp_path, fake_slot):
    fake_slot(_fake(1.0))
    path = runner.run("streaming_llm", _cfg(tmp_path))
    snapshot = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError) as e:
        runner.run("streaming_llm", _cfg(tmp_path, "experiment.cache_sizes=[]"))
    assert e.value.setting == "experiment.cache_sizes"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == snapshot
    assert read_record(path)["metrics"]["v"]["value"] == 1.0


def test_second_run_moves_the_whole_earlier_run_to_history(tmp_path, fake_slot):
    sibling = _folder(tmp_path) / "model=other"  # a sweep job's folder beside the untagged run
    sibling.mkdir(parents=True)
    (sibling / "record.json").write_text("{}")
    fake_slot(_fake(1.0))
    first = runner.run("streaming_llm", _cfg(tmp_path))
    created = json.loads(first.read_text())["created"]
    fake_slot(_fake(2.0))
    second = runner.run("streaming_llm", _cfg(tmp_path))
    (old,) = (second.parent / "history").iterdir()
    assert json.loads((old / "record.json").read_text())["created"] == created
    assert (old / "rows.csv").read_text().strip().endswith("1.0") and (old / "fig.png").read_bytes() == b"png 1.000000"
    assert (second.parent / "rows.csv").read_text().strip().endswith("2.0")
    assert read_record(second)["metrics"]["v"]["value"] == 2.0
    assert (sibling / "record.json").read_text() == "{}"  # a sibling job is never moved into history


def test_stale_staging_of_a_dead_process_is_removed(tmp_path, fake_slot):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = _folder(tmp_path) / f".staging-{dead.pid}"
    stale.mkdir(parents=True)
    (stale / "rows.csv").write_text("half")
    fake_slot(_fake(1.0))
    runner.run("streaming_llm", _cfg(tmp_path))
    assert not stale.exists() and not (_folder(tmp_path) / f".staging-{os.getpid()}").exists()


def test_skip_if_current_skips_same_code_and_config_only(tmp_path, fake_slot, monkeypatch):
    calls: list = []
    fake_slot(_fake(1.0, calls=calls))
    first = runner.run("streaming_llm", _cfg(tmp_path, "skip_if_current=true"))
    assert read_record(first)["env"]["code_hash"] == env_mod.code_hash()
    assert runner.run("streaming_llm", _cfg(tmp_path, "skip_if_current=true")) == first
    assert len(calls) == 1  # skipped: same code hash, same resolved config
    runner.run("streaming_llm", _cfg(tmp_path))  # skip_if_current=false (FORCE=1): reruns
    assert len(calls) == 2
    runner.run("streaming_llm", _cfg(tmp_path, "skip_if_current=true", "experiment.max_tokens=999"))
    assert len(calls) == 3  # another config reruns
    monkeypatch.setattr(env_mod, "code_hash", lambda: "0123456789abcdef")
    runner.run("streaming_llm", _cfg(tmp_path, "skip_if_current=true", "experiment.max_tokens=999"))
    assert len(calls) == 4  # other code reruns


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def test_code_hash_follows_the_code_not_caches(tmp_path, monkeypatch):
    monkeypatch.setattr(env_mod, "REPO_ROOT", tmp_path)
    (tmp_path / "llm_efficiency_bench").mkdir()
    (tmp_path / "llm_efficiency_bench" / "configs").mkdir()
    (tmp_path / "llm_efficiency_bench" / "a.py").write_text("x = 1\n")
    (tmp_path / "llm_efficiency_bench" / "configs" / "c.yaml").write_text("k: 1\n")
    no_git = env_mod.code_hash()  # outside a checkout: every file
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("*.cache\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "c")
    h = env_mod.code_hash()
    assert h == no_git
    (tmp_path / "llm_efficiency_bench" / "big.cache").write_text("ignored build output")
    (tmp_path / "results.txt").write_text("outside the code folders")
    assert env_mod.code_hash() == h
    (tmp_path / "llm_efficiency_bench" / "a.py").write_text("x = 2\n")  # an uncommitted edit changes it
    h2 = env_mod.code_hash()
    assert h2 != h
    (tmp_path / "llm_efficiency_bench" / "configs" / "new.yaml").write_text("k: 2\n")  # so does a new untracked config
    assert env_mod.code_hash() != h2


def test_make_reproduce_passes_results_dir_and_resumes_unless_forced():
    def dry(*args):
        r = subprocess.run(["make", "-n", "reproduce-fourier_vlm", *args], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout
    out = dry("RESULTS_DIR=/tmp/elsewhere", "PROFILE=smoke")
    assert "results_dir=/tmp/elsewhere" in out and "skip_if_current=true" in out and "profile=smoke" in out
    assert "skip_if_current" not in dry("FORCE=1")
    r = subprocess.run(["make", "-n", "reproduce", "RESULTS_DIR=/tmp/elsewhere"], cwd=REPO, capture_output=True,
                       text=True)
    assert "reproduce.report --results /tmp/elsewhere" in r.stdout


@pytest.mark.e2e
def test_fourier_speed_shows_progress(tmp_path, capfd):
    """Fourier `speed` reports every timed generation (a long run is never silent; its G is bounded up front)."""
    cfg = compose("fourier_vlm", ["experiment=speed", "profile=smoke", f"results_dir={tmp_path}", "fourier.budgets=[6]",
                                  "experiment.repeats=1", "experiment.warmup=0", "experiment.dct_grids=[24]", "experiment.new_tokens=2",
                                  "experiment.text_tokens=1"])
    runner.run("fourier_vlm", cfg)
    err = capfd.readouterr().err
    assert "speed G=2:" in err and "0/2" in err  # 2 budgets (576 and 36 tokens) x 1 repetition


def test_skip_if_current_with_a_config_keyed_by_numbers(tmp_path, fake_slot):
    """fourier_vlm flops has `third_party_tflops: {576: ...}`: JSON turns its keys into strings."""
    calls: list = []
    fake_slot(_fake(1.0, calls=calls))
    cfg = compose("fourier_vlm", ["experiment=flops", "profile=smoke", f"results_dir={tmp_path}", "skip_if_current=true"])
    first = runner.run("fourier_vlm", cfg)
    assert runner.run("fourier_vlm", cfg) == first and len(calls) == 1
