"""The regression gate fails on every value it cannot vouch for, with one line naming the record file, the
metric and what is wrong; `--only-present` compares just the experiments a user ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _metric(value, unit="ppl", direction="lower", kind="quality") -> dict:
    return {"value": value, "unit": unit, "direction": direction, "kind": kind}


def _write(root: Path, metrics: dict, experiment: str = "e", profile: str = "cpu", folder: str | None = None) -> Path:
    """A record written as raw JSON (so NaN and Infinity can be planted, as a foreign writer could)."""
    d = root / "p" / experiment / (folder or profile)
    d.mkdir(parents=True, exist_ok=True)
    rec = {"schema_version": 1, "paper": "p", "experiment": experiment, "profile": profile,
           "created": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, "metrics": metrics, "config": {},
           "env": {"device_name": "cpu: X"}, "artifacts": {}}
    path = d / "record.json"
    path.write_text(json.dumps(rec))  # json.dumps writes NaN / Infinity / -Infinity tokens
    return path


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reproduce.check", *args], cwd=REPO, capture_output=True, text=True)


BASE = {"ppl": _metric(10.0), "acc": _metric(0.5, "fraction", "higher"),
        "latency": _metric(3.0, "ms", "lower", "timing")}


@pytest.mark.parametrize("metric,value,unit,direction,expect", [
    ("ppl", float("nan"), "ppl", "lower", "value is NaN"),
    ("ppl", float("-inf"), "ppl", "lower", "value is -Infinity"),
    ("acc", float("inf"), "fraction", "higher", "value is +Infinity"),
    ("latency", 3.0, "s", "lower", "unit changed from 'ms' to 's'"),
    ("acc", 0.5, "fraction", "lower", "direction changed from 'higher' to 'lower'"),
    ("ppl", None, "ppl", "lower", "value is null"),
], ids=["nan", "minus-inf-lower-is-better", "plus-inf-higher-is-better", "unit", "direction", "null"])
def test_gate_fails_on_a_value_it_cannot_vouch_for(tmp_path, metric, value, unit, direction, expect):
    base, new = tmp_path / "base", tmp_path / "new"
    _write(base, BASE)
    kind = BASE[metric]["kind"]
    path = _write(new, {**BASE, metric: _metric(value, unit, direction, kind)})
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 1, r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [f"error: {path}: metric {metric!r}: " + lines[0].split(f"metric {metric!r}: ", 1)[1]]
    assert expect in lines[0] and "Traceback" not in r.stderr
    assert "improved" not in r.stdout.split("\n", 1)[1]  # never listed as an improvement


def test_gate_fails_on_a_metric_missing_from_the_new_record(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    _write(base, BASE)
    path = _write(new, {k: v for k, v in BASE.items() if k != "acc"})
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 1
    assert f"error: {path}: metric 'acc': missing from the new record" in r.stderr.splitlines()


def test_gate_fails_on_an_empty_metrics_block_with_or_without_a_baseline(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    _write(base, BASE)
    path = _write(new, {})
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 1 and f"error: {path}: empty metrics block" in r.stderr
    other = _write(new, {}, experiment="only_new")
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 1 and f"error: {other}: empty metrics block" in r.stderr


def test_gate_fails_on_nan_in_a_record_without_baseline(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    _write(base, BASE)
    _write(new, BASE)
    path = _write(new, {"ppl": _metric(float("nan"))}, experiment="only_new")
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 1 and f"error: {path}: metric 'ppl': value is NaN" in r.stderr


@pytest.mark.parametrize("profile_arg", [[], ["--profile", "cpu"]])
def test_gate_fails_on_a_record_in_another_profiles_folder(tmp_path, profile_arg):
    base, new = tmp_path / "base", tmp_path / "new"
    _write(base, BASE)
    path = _write(new, BASE, profile="smoke", folder="cpu")  # a smoke record inside cpu/
    r = _check("--results", str(new), "--baseline", str(base), *profile_arg)
    assert r.returncode == 1
    assert f"error: {path}: record says profile 'smoke' but lies in p/e/cpu/" in r.stderr.splitlines()


def test_gate_passes_identical_records_and_still_judges_ordinary_changes(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    _write(base, BASE)
    _write(new, BASE)
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    _write(new, {**BASE, "ppl": _metric(9.0)})  # 10% lower PPL: a real improvement
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 0 and "improved" in r.stdout
    _write(new, {**BASE, "ppl": _metric(11.0)})
    assert _check("--results", str(new), "--baseline", str(base)).returncode == 1


def test_only_present_compares_just_the_experiments_run_and_names_the_skipped(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    for e in ("e", "f", "g"):
        _write(base, BASE, experiment=e)
    _write(new, BASE, experiment="f")
    r = _check("--results", str(new), "--baseline", str(base))
    assert r.returncode == 1  # without the option, the two experiments not run are missing records
    r = _check("--results", str(new), "--baseline", str(base), "--only-present")
    assert r.returncode == 0, r.stderr
    assert "skipped 2 baseline record(s)" in r.stdout and "p/e/cpu" in r.stdout and "p/g/cpu" in r.stdout
    _write(new, {**BASE, "ppl": _metric(float("nan"))}, experiment="f")  # what was run is still judged
    r = _check("--results", str(new), "--baseline", str(base), "--only-present")
    assert r.returncode == 1 and "metric 'ppl': value is NaN" in r.stderr
    bad = _write(new, BASE, experiment="g")
    bad.write_text("{")  # a corrupt record is not "not run": it fails
    r = _check("--results", str(new), "--baseline", str(base), "--only-present")
    assert r.returncode == 1 and f"corrupt record {bad}" in r.stderr


def test_only_present_outside_the_repository_compares_with_the_committed_results(tmp_path):
    from llm_efficiency_bench.core.records import find_records, read_record

    committed = sorted(p for p in find_records(REPO / "results"))
    src = next(p for p in committed if read_record(p)["profile"] == "cpu")
    rel = src.relative_to(REPO / "results")
    dest = tmp_path / "mine" / rel
    dest.parent.mkdir(parents=True)
    dest.write_text(src.read_text())  # one experiment, rerun with identical numbers
    r = _check("--results", str(tmp_path / "mine"), "--only-present")
    assert r.returncode == 0, r.stderr
    assert "compared 1 record(s) with 1 baseline record(s)" in r.stdout and "skipped" in r.stdout
    r = _check("--results", str(tmp_path / "mine"))  # without the option: no git baseline out there
    assert r.returncode == 2 and "--only-present" in r.stderr
