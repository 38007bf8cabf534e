"""llm_efficiency_bench.cli.bench_compare: goals reported (never failed), one-line errors for bad files, same-machine
regressions of medians and ratios."""

from __future__ import annotations

import json

import pytest

from llm_efficiency_bench.cli import bench_compare

GOALS = ["--ratio", "chunked:speedup>=25", "--ratio", "sink:ratio<=1.15"]


def _write(path, benches: dict[str, tuple[float, dict]], machine: str = "amd-epyc-2cpu", threads: int = 2) -> str:
    data = {"machine_info": {"cpu": {"brand_raw": "x"}}, "suite": {"env": {"machine": machine, "torch_threads": threads}},
            "benchmarks": [{"fullname": k, "stats": {"median": m}, "extra_info": e} for k, (m, e) in benches.items()]}
    path.write_text(json.dumps(data))
    return str(path)


def _run(tmp_path, name="new.json", speedup=(20.0, 21.0, 17.0), sink=(1.1, 1.2, 1.12), **kw) -> str:
    return _write(tmp_path / name, {
        "b/test_x.py::test_chunked": (1.0, {"speedup": sorted(speedup)[1], "speedup_rounds": list(speedup),
                                            "about": {"speedup": "token over chunked"}}),
        "b/test_y.py::test_sink": (1.0, {"ratio": sorted(sink)[1], "ratio_rounds": list(sink)})}, **kw)


def test_goal_not_met_is_reported_not_failed(tmp_path, capsys):
    new = _run(tmp_path)
    assert bench_compare.main([new, *GOALS]) == 0
    out = capsys.readouterr().out
    assert "NOT MET" in out and "| chunked.speedup | 20 | 17-21 |" in out  # median and min-max of the rounds
    assert "| sink.ratio | 1.12 | 1.1-1.2 |" in out and "| met |" in out
    assert "goals not met or not measured: chunked.speedup" in out
    assert bench_compare.main([new, *GOALS, "--strict"]) == 1  # opt-in gate


def test_unmeasured_ratio_is_named_and_spec_errors_exit_2(tmp_path, capsys):
    new = _run(tmp_path)
    assert bench_compare.main([new, "--ratio", "vs_stock>=1.0", "--ratio", "split_vs_masked"]) == 0
    out = capsys.readouterr().out
    assert "| vs_stock |" in out and "not measured" in out
    assert bench_compare.main([new, "--ratio", "speedup=25"]) == 2
    assert "expected [BENCH:]KEY" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_compare.main([new])  # one file needs a ratio


@pytest.mark.parametrize("content, words", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"machine_info": {}}', "not a pytest-benchmark JSON"),
    (b"\xff\xfe\x00", "cannot read"),
])
def test_missing_or_unreadable_file_is_one_line_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "run.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert bench_compare.main([str(path), *GOALS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and words in err
    assert bench_compare.main([str(path), _run(tmp_path), *GOALS]) == 2  # as the baseline too


def test_regression_against_a_same_machine_baseline(tmp_path, capsys):
    base = _run(tmp_path, "base.json")
    assert bench_compare.main([base, _run(tmp_path, "same.json"), *GOALS]) == 0
    slower_ratio = _run(tmp_path, "r.json", speedup=(12.0, 13.0, 14.0))  # 20x -> 13x: a regression
    assert bench_compare.main([base, slower_ratio, *GOALS, "--fail", "0.25"]) == 1
    assert "| chunked.speedup (ratio) | 20 | 13 | -35.0% | regressed |" in capsys.readouterr().out
    higher_sink = _run(tmp_path, "s.json", sink=(1.5, 1.6, 1.55))  # a ceiling: higher is worse
    assert bench_compare.main([base, higher_sink, *GOALS]) == 1
    slow = _write(tmp_path / "slow.json", {"b/test_x.py::test_chunked": (1.5, {}), "b/test_y.py::test_sink": (1.0, {})})
    assert bench_compare.main([base, slow, "--fail", "0.25"]) == 1  # a median time 50% slower
    capsys.readouterr()


def test_baseline_from_another_machine_is_refused(tmp_path, capsys):
    base = _run(tmp_path, "base.json", machine="intel-xeon-8cpu")
    assert bench_compare.main([base, _run(tmp_path), *GOALS]) == 2
    err = capsys.readouterr().err
    assert "intel-xeon-8cpu" in err and "amd-epyc-2cpu" in err and "one machine" in err
    one_thread = _run(tmp_path, "t1.json", threads=1)
    assert bench_compare.main([one_thread, _run(tmp_path), *GOALS]) == 2
    assert "(1 torch threads)" in capsys.readouterr().err
