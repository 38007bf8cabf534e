"""Benchmarks that read data say so in one line and fail when asked for without it; `make bench` leaves them
out, saying so, when BENCH_DATA_DIR is unset."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from benchmarks import conftest as bench_conftest
from tests.conftest import REPO


def test_data_text_fails_with_one_line_naming_the_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    with pytest.raises(pytest.fail.Exception, match="BENCH_DATA_DIR is not set") as e:
        bench_conftest.data_text("gutenberg/moby_dick.txt")
    assert "\n" not in str(e.value) and "gutenberg/moby_dick.txt" in str(e.value)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="cannot read .*moby_dick.txt"):
        bench_conftest.data_text("gutenberg/moby_dick.txt")
    (tmp_path / "gutenberg").mkdir()
    (tmp_path / "gutenberg" / "moby_dick.txt").write_text("Call me Ishmael.")
    assert bench_conftest.data_text("gutenberg/moby_dick.txt") == "Call me Ishmael."


def test_data_benchmarks_are_marked_and_check_data_before_loading_a_model():
    # read from the source: importing the module outside `make bench` would need its marker registered
    tree = ast.parse((REPO / "benchmarks" / "test_streaming_eval.py").read_text())
    marks = next(ast.unparse(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "") == "pytestmark")
    assert "pytest.mark.benchmark" in marks and "pytest.mark.needs_data" in marks
    tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert len(tests) == 2
    for fn in tests:
        params = [a.arg for a in fn.args.args]
        model = next(p for p in params if p.startswith("smollm2"))
        assert params.index("moby_dick") < params.index(model)  # fixtures set up in this order


def _make_bench_dry(data_dir: str) -> str:
    out = subprocess.run(["make", "-n", "bench", f"BENCH_DATA_DIR={data_dir}", "STAMP=", "BIN=bin"], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_bench_leaves_data_benchmarks_out_only_without_data():
    without = _make_bench_dry("")
    assert "-m 'benchmark and not needs_data'" in without and "BENCH_DATA_DIR is not set" in without
    with_data = _make_bench_dry("/data")
    assert "-m 'benchmark'" in with_data and "not set" not in with_data
    assert "reproduce.bench_compare .benchmarks/latest.json --ratio" in with_data


@pytest.mark.slow  # a pytest subprocess: imports torch and transformers
def test_asked_for_without_data_exits_non_zero_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DATA_DIR"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "benchmarks/test_streaming_eval.py", "-m", "benchmark", "--benchmark-enable",
                          "-k", "token_by_token", f"--rootdir={REPO}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0, out.stdout
    assert "skipped" not in out.stdout
    assert "needs data: BENCH_DATA_DIR is not set" in out.stdout
