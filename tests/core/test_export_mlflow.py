"""`python -m llm_efficiency_bench.cli.export_mlflow`: records into a local MLflow file store, read back through
MLflow's own API; without mlflow, one line naming the extra and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_efficiency_bench.cli import export_mlflow
from llm_efficiency_bench.core.records import Record, write_record
from tests.conftest import REPO


def _records(results):
    """Two records of two papers, one in a sweep job's folder: a `+` in a metric name, a stderr, a NaN, nested
    config, listed artifacts."""
    a = Record("streaming_llm", "ppl_table1", "cpu", created="2026-01-02T03:04:05+00:00", duration_s=60.0,
               config={"eval": {"chunk": 64}, "scale": {"cache_sizes": [16, 32]}, "model": {"name": "tiny"}},
               env={"git_sha": "a" * 40, "git_dirty": False, "code_hash": "0123456789abcdef",
                    "device_name": "cpu: X"})
    a.add("ppl.streaming.4+1020", 12.5, "ppl", "lower", stderr=0.25)
    a.add("ppl.dense", float("nan"), "ppl", "lower", note="diverged")
    a.add("speedup", 2.0, "x", "higher", kind="timing")
    folder = results / "streaming_llm" / "ppl_table1" / "cpu"
    folder.mkdir(parents=True)
    (folder / "table1.csv").write_text("policy,ppl\nstreaming,12.5\n")
    (folder / "table1.md").write_text("| policy | ppl |\n")
    a.artifacts = {"csv": ["table1.csv"], "tables": ["table1.md"]}
    write_record(folder, a)
    b = Record("fourier_vlm", "flops", "cpu", created="2026-01-03T00:00:00+00:00", duration_s=1.0,
               config={"fourier": {"budgets": [36]}}, env={"git_sha": "b" * 40, "code_hash": "fedcba9876543210"})
    b.add("tflops.36", 1.5, "TFLOPs", "lower")
    write_record(results / "fourier_vlm" / "flops" / "cpu" / "model=other", b)


def test_records_export_to_mlflow_and_read_back(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason="mlflow is an optional extra: pip install 'llm-efficiency-bench[mlflow]'")
    from mlflow.tracking import MlflowClient

    # The exporter sets MLFLOW_ALLOW_FILE_STORE when unset; set-then-delete makes monkeypatch undo that.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    results, store = tmp_path / "results", tmp_path / "mlruns"
    _records(results)
    assert export_mlflow.main(["--results", str(results), "--to", str(store)]) == 0
    assert "2 run(s) exported" in capsys.readouterr().out

    client = MlflowClient(tracking_uri=store.as_uri())
    papers = {e.name: e.experiment_id for e in client.search_experiments()}
    assert {"streaming_llm", "fourier_vlm"} <= set(papers)
    (run,) = client.search_runs([papers["streaming_llm"]])
    assert run.info.run_name == "ppl_table1/cpu" and run.info.status == "FINISHED"
    assert run.data.metrics == {"ppl.streaming.4_1020": 12.5, "ppl.streaming.4_1020.stderr": 0.25, "speedup": 2.0}
    assert run.data.params == {"eval.chunk": "64", "scale.cache_sizes": "[16, 32]", "model.name": "tiny"}
    tags = run.data.tags
    assert (tags["git_sha"], tags["code_hash"], tags["profile"], tags["experiment"], tags["paper"]) == (
        "a" * 40, "0123456789abcdef", "cpu", "ppl_table1", "streaming_llm")
    assert json.loads(tags["renamed_metrics"]) == {"ppl.streaming.4_1020": "ppl.streaming.4+1020",
                                                   "ppl.streaming.4_1020.stderr": "ppl.streaming.4+1020.stderr"}
    assert tags["null_metrics"] == "ppl.dense"
    assert run.info.end_time - run.info.start_time == 60_000
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert files == {"record.json", "csv", "tables"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "csv")] == ["csv/table1.csv"]

    (other,) = client.search_runs([papers["fourier_vlm"]])
    assert other.info.run_name == "flops/cpu/model=other" and other.data.metrics == {"tflops.36": 1.5}
    assert other.data.tags["record"] == "fourier_vlm/flops/cpu/model=other"

    # Exporting again adds nothing; a new record in the same folder adds one run.
    assert export_mlflow.main(["--results", str(results), "--to", str(store), "--no-artifacts"]) == 0
    assert "0 run(s) exported" in capsys.readouterr().out
    c = Record("streaming_llm", "ppl_table1", "cpu", created="2026-02-01T00:00:00+00:00")
    c.add("speedup", 3.0, "x", "higher", kind="timing")
    write_record(results / "streaming_llm" / "ppl_table1" / "cpu", c)  # the earlier one moves to history/
    assert export_mlflow.main(["--results", str(results), "--to", str(store), "--no-artifacts"]) == 0
    runs = client.search_runs([papers["streaming_llm"]], order_by=["attributes.start_time DESC"])
    assert [r.data.metrics.get("speedup") for r in runs] == [3.0, 2.0]
    assert client.list_artifacts(runs[0].info.run_id) == []


def test_without_mlflow_the_command_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError, installed or not
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    monkeypatch.setitem(sys.modules, "mlflow.exceptions", None)
    _records(tmp_path)
    assert export_mlflow.main(["--results", str(tmp_path), "--to", str(tmp_path / "mlruns")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: exporting to MLflow needs the mlflow extra: pip install 'llm-efficiency-bench[mlflow]'"]
    assert not (tmp_path / "mlruns").exists()


def test_a_results_folder_that_is_not_there_is_named(tmp_path):
    r = subprocess.run([sys.executable, "-m", "llm_efficiency_bench.cli.export_mlflow", "--results",
                        str(tmp_path / "nope"), "--to", str(tmp_path / "mlruns")], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr.strip() == f"error: --results {tmp_path / 'nope'}: not a folder of records"
