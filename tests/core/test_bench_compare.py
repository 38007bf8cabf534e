"""reproduce.bench_compare: median regressions and ratio floors read from a benchmark's extra_info."""

from __future__ import annotations

import json

import pytest

from reproduce import bench_compare


def _write(path, benches: dict[str, tuple[float, dict]]) -> str:
    data = {"machine_info": {"cpu": "x"},
            "benchmarks": [{"fullname": k, "stats": {"median": m}, "extra_info": e} for k, (m, e) in benches.items()]}
    path.write_text(json.dumps(data))
    return str(path)


def test_ratio_floor_passes_and_fails(tmp_path, capsys):
    new = _write(tmp_path / "new.json", {"a::eval": (1.0, {"speedup": 26.0}), "b::sink": (1.0, {"ratio": 1.2})})
    assert bench_compare.main([new, "--ratio", "speedup>=25"]) == 0
    assert bench_compare.main([new, "--ratio", "speedup>=30"]) == 1
    assert bench_compare.main([new, "--ratio", "sink:ratio<=1.15"]) == 1
    assert bench_compare.main([new, "--ratio", "sink:ratio<=1.25", "--ratio", "speedup>=25"]) == 0
    assert "FAIL" in capsys.readouterr().out


def test_ratio_not_measured_fails_and_bad_spec_exits_2(tmp_path):
    new = _write(tmp_path / "new.json", {"a::eval": (1.0, {"speedup": 26.0})})
    assert bench_compare.main([new, "--ratio", "vs_stock>=1.0"]) == 1  # skipped benchmark: not judged = fail
    assert bench_compare.main([new, "--ratio", "other:speedup>=1"]) == 1  # key only in another benchmark
    assert bench_compare.main([new, "--ratio", "speedup=25"]) == 2


def test_median_regression_with_two_files(tmp_path):
    base = _write(tmp_path / "base.json", {"a::eval": (1.0, {})})
    assert bench_compare.main([base, _write(tmp_path / "n1.json", {"a::eval": (1.1, {})}), "--fail", "0.25"]) == 0
    assert bench_compare.main([base, _write(tmp_path / "n2.json", {"a::eval": (1.5, {})}), "--fail", "0.25"]) == 1


def test_one_file_needs_a_ratio(tmp_path):
    with pytest.raises(SystemExit):
        bench_compare.main([_write(tmp_path / "n.json", {})])
