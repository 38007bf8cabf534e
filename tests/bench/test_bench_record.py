"""llm_efficiency_bench.cli.bench_record: the machine's record from the runs of one commit, and the README table from it."""

from __future__ import annotations

import json

import pytest

from llm_efficiency_bench.core.benchruns import parse_goal
from llm_efficiency_bench.core.records import read_record
from llm_efficiency_bench.cli import bench_record
from llm_efficiency_bench.core.run_folder import RunFolder

ENV = {"machine": "amd-epyc-2cpu", "cpu_model": "AMD EPYC", "cpu_count": 2, "torch_threads": 2, "torch": "2.13.0",
       "git_sha": "a" * 40, "git_dirty": False}
RATIOS = ["--ratio", "chunked:speedup>=25", "--ratio", "sink:ratio<=1.15", "--ratio", "vs_stock>=1.0",
          "--ratio", "chunked:tok_ms"]


def _run(runs, name: str, speedup: list[float], env: dict | None = None) -> None:
    runs.mkdir(exist_ok=True)
    data = {"suite": {"env": env or ENV, "created": "2026-12-04T15:00:00+00:00", "duration_s": 100.0, "rounds": 3},
            "benchmarks": [
                {"fullname": "b/t.py::test_chunked", "stats": {"median": 1.0},
                 "extra_info": {"speedup": sorted(speedup)[1], "speedup_rounds": speedup, "tok_ms": 80.0,
                                "about": {"speedup": "token over chunked"}}},
                {"fullname": "b/t.py::test_sink", "stats": {"median": 1.0},
                 "extra_info": {"ratio": 1.1, "ratio_rounds": [1.05, 1.1, 1.2]}}]}
    (runs / name).write_text(json.dumps(data))


@pytest.fixture
def here(monkeypatch):
    monkeypatch.setattr(bench_record, "machine_env", lambda: dict(ENV))
    monkeypatch.setattr(bench_record, "capture", lambda device: {"device_name": "cpu: AMD EPYC (2 cores)"})


def test_record_aggregates_runs_of_this_commit_and_machine(tmp_path, here, capsys):
    runs = tmp_path / "runs"
    _run(runs, "1.json", [20.0, 22.0, 21.0])
    _run(runs, "2.json", [24.0, 26.0, 25.0])
    _run(runs, "3.json", [17.0, 18.0, 19.0])
    _run(runs, "other-commit.json", [99.0, 99.0, 99.0], {**ENV, "git_sha": "b" * 40})
    _run(runs, "dirty.json", [99.0, 99.0, 99.0], {**ENV, "git_dirty": True})
    _run(runs, "other-machine.json", [99.0, 99.0, 99.0], {**ENV, "machine": "intel-8cpu"})
    assert bench_record.main(["--runs", str(runs), "--results", str(tmp_path / "res"), *RATIOS]) == 0
    rec = read_record(tmp_path / "res/bench/ratios/amd-epyc-2cpu/record.json")
    sp = rec["extra"]["ratios"]["chunked.speedup"]
    assert (sp["median"], sp["min"], sp["max"], sp["n_runs"]) == (21.0, 18.0, 25.0, 3)  # over the run medians
    assert sp["met"] is False and sp["status"] == "NOT MET" and sp["rounds"]["n"] == 9
    assert rec["extra"]["ratios"]["sink.ratio"]["met"] is True
    assert rec["extra"]["ratios"]["vs_stock"] == {"goal": ">= 1", "met": None, "n_runs": 0, "status": "not measured"}
    assert rec["extra"]["ratios"]["chunked.tok_ms"]["goal"] == "—"  # reported without a goal
    m = rec["metrics"]["chunked.speedup"]
    assert (m["value"], m["unit"], m["direction"], m["kind"]) == (21.0, "x", "higher", "timing")
    assert rec["metrics"]["sink.ratio"]["direction"] == "lower" and "chunked.tok_ms" not in rec["metrics"]
    assert rec["env"]["git_sha"] == "a" * 40 and rec["env"]["cpu_model"] == "AMD EPYC" and rec["duration_s"] == 300
    assert "3 other run(s) ignored" in capsys.readouterr().out


def test_rerecording_archives_the_earlier_record_with_a_line(tmp_path, here, capsys):
    runs, res = tmp_path / "runs", tmp_path / "res"
    _run(runs, "1.json", [20.0, 22.0, 21.0])
    assert bench_record.main(["--runs", str(runs), "--results", str(res), *RATIOS]) == 0
    capsys.readouterr()
    assert bench_record.main(["--runs", str(runs), "--results", str(res), *RATIOS]) == 0
    out = capsys.readouterr().out
    assert "is replaced" in out and "earlier run kept as" in out
    assert len(list((res / "bench/ratios/amd-epyc-2cpu/history").glob("*/record.json"))) == 1


def test_dirty_tree_no_runs_and_corrupt_runs_are_one_line_exit_2(tmp_path, here, monkeypatch, capsys):
    runs = tmp_path / "runs"
    _run(runs, "x.json", [20.0, 21.0, 22.0], {**ENV, "git_sha": "b" * 40})
    args = ["--runs", str(runs), "--results", str(tmp_path / "res"), *RATIOS]
    assert bench_record.main(args) == 2
    assert "no run of git aaaaaaaaaa on amd-epyc-2cpu" in capsys.readouterr().err
    (runs / "broken.json").write_text("{")
    assert bench_record.main(args) == 2
    assert "broken.json: not valid JSON" in capsys.readouterr().err
    monkeypatch.setattr(bench_record, "machine_env", lambda: {**ENV, "git_dirty": True})
    assert bench_record.main(args) == 2
    assert "uncommitted changes" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_bench_table_markdown_from_the_record(tmp_path, here):
    assert "No bench record yet" in bench_record.bench_table_markdown(tmp_path)
    runs = tmp_path / "runs"
    for i, s in enumerate(([20.0, 22.0, 21.0], [26.0, 27.0, 25.0])):
        _run(runs, f"{i}.json", s)
    env = dict(ENV)
    rec = bench_record.build_record(bench_record.select_runs(runs, env)[0], [parse_goal(s) for s in RATIOS[1::2]], env)
    RunFolder(bench_record.record_dir(tmp_path, env["machine"])).write_record(rec)
    table = bench_record.bench_table_markdown(tmp_path)
    assert "AMD EPYC (2 cores, 2 torch threads), torch 2.13.0; 2 run(s)" in table and "`aaaaaaaaaa`" in table
    assert rec.to_dict()["created"][:10] in table
    assert "| `chunked.speedup` | token over chunked | 23.5x | 21-26 | 20.8-26.2 | 2 | >= 25 | **NOT MET** |" in table
    assert "| `sink.ratio` |  | 1.1x | 1.1-1.1 |" in table and "| `vs_stock` |  | not measured |" in table
