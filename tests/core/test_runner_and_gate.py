"""Experiments are named by their YAML (`fn:`), the runner counts every leg of a resumed run, and the
regression gate judges each metric by its kind and fails on corrupt or missing records and bad options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.records import Record, infer_kind, metric_kind, read_record, write_record
from llm_efficiency_bench.core.regress import compare_records, load_rules
from llm_efficiency_bench.core.runner import resolve_experiment
from tests.conftest import CONFIGS, REPO, compose

EXPERIMENT_YAMLS = sorted(CONFIGS.glob("*/experiment/*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENT_YAMLS, ids=lambda p: f"{p.parts[-3]}/{p.stem}")
def test_every_experiment_yaml_names_a_callable(path):
    exp = yaml.safe_load(path.read_text())["experiment"]
    assert exp["name"] == path.stem
    assert exp["fn"].startswith(f"llm_efficiency_bench.{path.parts[-3]}."), "a paper's experiment lives in its own package"
    assert callable(resolve_experiment(exp["fn"]))


@pytest.mark.parametrize("spec,msg", [
    (None, "names no function"), ("", "names no function"), ("nocolon", "not of the form"),
    ("llm_efficiency_bench.streaming_llm.nope:ppl_table1", "no module"), ("no_such_pkg.mod:fn", "no module"),
    ("llm_efficiency_bench.streaming_llm.experiments:nope", "no function 'nope'"),
    ("llm_efficiency_bench.streaming_llm.experiments:PAPER", "no function 'PAPER'"),  # exists, but not callable
])
def test_bad_experiment_fn_is_a_config_error(spec, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        resolve_experiment(spec)
    assert e.value.setting == "experiment.fn"


def _resume_leg(ctx) -> None:  # an experiment whose earlier legs took 100 s (as a checkpoint would say)
    ctx.resumed_seconds = 100.0
    ctx.metric("tokens", 5, "tokens", "none")


def test_duration_counts_every_leg_of_a_resumed_run(tmp_path):
    from llm_efficiency_bench.core.runner import run

    cfg = compose("fourier_vlm", ["experiment=lowpass", "profile=smoke", f"results_dir={tmp_path}"])
    cfg.experiment.fn = f"{__name__}:_resume_leg"
    rec = read_record(run("fourier_vlm", cfg))
    assert 100.0 <= rec["duration_s"] < 160.0
    assert rec["metrics"]["tokens"]["kind"] == "count"


# ---------------------------------------------------------------------------------------------- kinds
def test_kind_is_set_where_recorded_else_inferred_from_the_unit():
    r = Record("p", "e", "cpu")
    r.add("speedup.4096", 20.0, "x", "higher", kind="timing")
    r.add("ppl", 10.0, "ppl", "lower")
    r.add("rss_mb.max", 700.0, "MiB", "lower")
    r.add("latency_ms", 3.0, "ms", "lower")
    kinds = {k: m.kind for k, m in r.metrics.items()}
    assert kinds == {"speedup.4096": "timing", "ppl": "quality", "rss_mb.max": "memory", "latency_ms": "timing"}
    with pytest.raises(ValueError, match="kind"):
        r.add("m", 1.0, "x", "none", kind="vibes")
    assert infer_kind("tokens") == "count" and metric_kind({"unit": "MiB"}) == "memory"  # a record without kind


def test_every_committed_record_still_reads():
    paths = sorted((REPO / "results").rglob("record.json"))
    assert paths
    for p in paths:
        if "history" not in p.parts:
            for m in read_record(p)["metrics"].values():
                assert metric_kind(m) in ("quality", "timing", "count", "memory")


def _rec(device="cpu: X", **metrics):
    return {"paper": "streaming_llm", "experiment": "ppl_4m", "profile": "smoke", "env": {"device_name": device},
            "metrics": {k: {"value": v[0], "unit": v[1], "direction": v[2], **({"kind": v[3]} if len(v) > 3 else {})}
                        for k, v in metrics.items()}}


def test_two_identical_smoke_runs_pass_memory_is_not_quality():
    # a false alarm to avoid: rss_mb.max moves +0.13% between two identical smoke runs
    old = _rec(**{"rss_mb.max": (700.0, "MiB", "lower"), "ppl.s": (10.0, "ppl", "lower")})
    new = _rec(**{"rss_mb.max": (700.91, "MiB", "lower"), "ppl.s": (10.0, "ppl", "lower")})
    assert {c.verdict for c in compare_records(old, new)} == {"same"}
    leak = _rec(**{"rss_mb.max": (800.0, "MiB", "lower"), "ppl.s": (10.0, "ppl", "lower")})
    assert {c.metric: c.verdict for c in compare_records(old, leak)}["rss_mb.max"] == "regressed"
    other = _rec(device="cuda: H100", **{"rss_mb.max": (9000.0, "MiB", "lower"), "ppl.s": (10.0, "ppl", "lower")})
    assert compare_records(old, other)[1].verdict == "skipped (other device)"


def test_timing_kind_comes_from_the_record_not_the_name():
    old = _rec(**{"fast_thing": (10.0, "x", "higher", "timing")})
    new = _rec(**{"fast_thing": (9.0, "x", "higher", "timing")})
    assert compare_records(old, new)[0].verdict == "same"  # 10% slower: within the 1.25x timing factor
    as_quality = _rec(**{"fast_thing": (9.0, "x", "higher")})
    assert compare_records(old, as_quality)[0].verdict == "regressed"  # a quality number moving 10%
    count_old, count_new = _rec(**{"n": (100, "tokens", "none")}), _rec(**{"n": (101, "tokens", "none")})
    assert compare_records(count_old, count_new)[0].verdict == "changed"  # counts are exact


def test_shipped_tolerance_file_has_every_kind_with_a_comment():
    path = REPO / "references" / "regression.yaml"
    rules = load_rules(path)
    assert set(rules["kinds"]) == {"quality", "timing", "count", "memory"}
    text = path.read_text()
    for kind in rules["kinds"]:
        block = text.split(f"  {kind}:", 1)[1].splitlines()[1]
        assert block.strip().startswith("#"), f"tolerance of {kind} has no comment"
    old = {**_rec(**{"speedup.64": (20.0, "x", "higher")}), "experiment": "speed"}  # an old record: no kind
    new = {**_rec(**{"speedup.64": (18.0, "x", "higher")}), "experiment": "speed"}
    assert compare_records(old, new, rules)[0].verdict == "same"  # the override judges it as timing


# ---------------------------------------------------------------------------------------------- check
def _write(root: Path, value: float = 10.0, name: str = "e") -> Path:
    d = root / "p" / name / "cpu"
    d.mkdir(parents=True, exist_ok=True)
    rec = Record("p", name, "cpu", env={"device_name": "cpu: X"})
    rec.add("ppl", value, "ppl", "lower")
    return write_record(d, rec)


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reproduce.check", *args], cwd=REPO, capture_output=True, text=True)


def test_check_fails_on_a_corrupt_or_missing_new_record(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    _write(base), _write(base, name="f"), _write(new)
    assert _check("--results", str(new), "--baseline", str(new)).returncode == 0  # itself: unchanged
    r = _check("--results", str(new), "--baseline", str(base))  # f is missing from the new results
    assert r.returncode == 1 and str(new / "p" / "f" / "cpu" / "record.json") in r.stderr
    bad = _write(new, name="f")
    bad.write_text('{"schema_version": 1, "paper": ')  # a torn write
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 1 and str(bad) in r.stderr and "corrupt" in r.stderr


@pytest.mark.parametrize("option", ["--results", "--baseline"])
def test_check_bad_folder_is_an_option_error(tmp_path, option):
    _write(tmp_path / "ok")
    other = "--baseline" if option == "--results" else "--results"
    r = _check(option, str(tmp_path / "missing"), other, str(tmp_path / "ok"))
    assert r.returncode == 2 and r.stderr.startswith(f"error: {option}") and "Traceback" not in r.stderr


def test_check_results_outside_the_repo_without_baseline_is_an_option_error(tmp_path):
    _write(tmp_path)
    r = _check("--results", str(tmp_path))
    assert r.returncode == 2 and "--results" in r.stderr and "Traceback" not in r.stderr


def _imports(path: Path) -> set[str]:
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_layering_core_knows_no_paper_and_only_the_cli_imports_the_cli():
    from llm_efficiency_bench.core.paths import papers as paper_names

    papers = tuple(f"llm_efficiency_bench.{p}" for p in paper_names())
    for path in sorted((REPO / "llm_efficiency_bench").rglob("*.py")):
        mods = _imports(path)
        if path.parent.name != "cli":
            assert not [m for m in mods if m.startswith("llm_efficiency_bench.cli")], path
        if path.parent.name == "core":
            assert not [m for m in mods if m.startswith(papers)], f"{path} imports a paper package"


def test_absolute_tolerance_for_differences_near_zero():
    rules = load_rules()
    old = {**_rec(**{"chat.rss_mb.growth_after_full": (0.34, "MiB", "lower")}), "experiment": "chat"}
    new = {**_rec(**{"chat.rss_mb.growth_after_full": (0.52, "MiB", "lower")}), "experiment": "chat"}
    assert compare_records(old, new, rules)[0].verdict == "same"  # +53%, but 0.18 MiB
    leak = {**_rec(**{"chat.rss_mb.growth_after_full": (40.0, "MiB", "lower")}), "experiment": "chat"}
    assert compare_records(old, leak, rules)[0].verdict == "regressed"


def test_record_config_has_no_absolute_machine_paths(tmp_path):
    """`data_dir` and `results_dir` given as absolute paths are stored relative to the repository."""
    import os

    from llm_efficiency_bench.core.paths import REPO_ROOT
    from llm_efficiency_bench.core.runner import _plain

    cfg = {"data_dir": str(REPO_ROOT.parent / "shared" / "data"), "results_dir": str(REPO_ROOT / "results"), "x": 1}
    plain = _plain(cfg)
    assert plain["data_dir"] == os.path.join("..", "shared", "data") and plain["results_dir"] == "results"
    assert plain["x"] == 1
