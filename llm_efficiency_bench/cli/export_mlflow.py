"""Export result records to MLflow: a local file store (a folder, no server), one MLflow run per record.

    python -m llm_efficiency_bench.cli.export_mlflow --results results --to ./mlruns [--no-artifacts]

Each paper becomes one MLflow experiment and each current `record.json` under `--results` one run in it
(named by its folder, e.g. `ppl_table1/cpu`), with
  params     the record's resolved config, flattened (`experiment.cache_sizes`, `eval.chunk`, ...);
  metrics    the record's metrics (a metric's `stderr` as `<name>.stderr`); a null value (a NaN or infinite
             measurement) is left out and named in the tag `null_metrics`; characters MLflow does not allow
             in a name (`+` in `ppl.streaming.4+1020`) become `_`, the original names in `renamed_metrics`
             (`renamed_params`);
  tags       paper, experiment, profile, git sha, code hash, device, created, the record's folder;
  artifacts  the record and the tables, CSVs and figures it lists (`--no-artifacts`: none).
A record already exported (same folder, same `created`) is skipped, so exporting again adds only new runs.

mlflow is an optional extra (`pip install 'llm-efficiency-bench[mlflow]'`, which installs mlflow-skinny);
without it the command exits 2 with one line saying so. A `--results` that is not a folder exits 2 naming the
option; a corrupt record is named on one line, the others are exported, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from llm_efficiency_bench.core.paths import REPO_ROOT
from llm_efficiency_bench.core.records import read_records

EXTRA = "pip install 'llm-efficiency-bench[mlflow]'"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH)
BATCH = 100  # MLflow takes at most 100 params or tags per log_batch call
_NOT_ALLOWED = re.compile(r"[^/\w.\- :]")  # MLflow names: alphanumerics, _ - . / : and space


def flatten(config: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(`dotted.key`, value as text) for every leaf of a resolved config; lists are JSON, nulls `null`."""
    if isinstance(config, dict) and config:
        for key, value in config.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        text = config if isinstance(config, str) else json.dumps(config)
        if len(text) > MAX_PARAM_CHARS:  # said, never cut silently: the whole config is in record.json
            text = text[:MAX_PARAM_CHARS - 40] + " ...[truncated: see record.json]"
        yield prefix, text


def mlflow_name(name: str) -> str:
    """`name` with the characters MLflow refuses in a param or metric name replaced by `_`."""
    return _NOT_ALLOWED.sub("_", name)


def _renamed(pairs: dict[str, Any], what: str, source: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """`pairs` keyed by MLflow names, and {MLflow name: original} for the names that changed.

    Raises:
        ValueError: two names that become one MLflow name (their values would overwrite each other).
    """
    out: dict[str, Any] = {}
    changed: dict[str, str] = {}
    originals: dict[str, str] = {}
    for name, value in pairs.items():
        key = mlflow_name(name)
        if key in out:
            raise ValueError(f"{source}: {what} {originals[key]!r} and {name!r} both become {key!r} in MLflow")
        out[key], originals[key] = value, name
        if key != name:
            changed[key] = name
    return out, changed


def _millis(created: str) -> int:
    """An ISO 8601 time as milliseconds since the epoch (MLflow's timestamps)."""
    return int(_dt.datetime.fromisoformat(created).timestamp() * 1000)


def _artifact_files(folder: Path, record: dict[str, Any]) -> list[tuple[Path, str]]:
    """(file, folder inside the run's artifacts) for the record and every file it lists that exists."""
    files = [(folder / "record.json", "")]
    for kind, rels in sorted((record.get("artifacts") or {}).items()):
        for rel in rels:
            p = folder / rel
            if ".." not in Path(rel).parts and p.is_file():
                files.append((p, str(Path(kind) / Path(rel).parent) if Path(rel).parent != Path(".") else kind))
    return files


def export_record(client: Any, path: Path, record: dict[str, Any], results: Path, artifacts: bool) -> str | None:
    """Log one record as an MLflow run; returns its run id, or None when it was exported before."""
    from mlflow.entities import Metric, Param

    folder = path.parent
    rel = folder.relative_to(results).as_posix()
    created = record.get("created") or ""
    key = f"{rel}@{created}"
    experiment = client.get_experiment_by_name(record["paper"])
    exp_id = experiment.experiment_id if experiment else client.create_experiment(record["paper"])
    if client.search_runs([exp_id], filter_string=f"tags.record_key = '{key}'", max_results=1):
        return None

    env = record.get("env") or {}
    values = {n: m.get("value") for n, m in record["metrics"].items()}
    values |= {f"{n}.stderr": m["stderr"] for n, m in record["metrics"].items() if m.get("stderr") is not None}
    values, metric_names = _renamed(values, "metrics", path)
    params, param_names = _renamed(dict(flatten(record.get("config") or {})), "config keys", path)
    tags = {"paper": record["paper"], "experiment": record["experiment"], "profile": record["profile"],
            "git_sha": str(env.get("git_sha")), "git_dirty": str(env.get("git_dirty")),
            # records older than `code_hash` name their code by `source_hash`
            "code_hash": str(env.get("code_hash") or env.get("source_hash")),
            "device_name": str(env.get("device_name")), "created": created, "record": rel, "record_key": key}
    nulls = sorted(n for n, v in values.items() if v is None)
    if nulls:
        tags["null_metrics"] = ", ".join(nulls)
    if metric_names:
        tags["renamed_metrics"] = json.dumps(metric_names)
    if param_names:
        tags["renamed_params"] = json.dumps(param_names)

    end = _millis(created) if created else None
    start = end - int(1000 * (record.get("duration_s") or 0)) if end is not None else None
    run = client.create_run(exp_id, start_time=start, run_name=rel.split("/", 1)[-1], tags=tags)
    run_id = run.info.run_id
    stamp = end if end is not None else 0
    metrics = [Metric(k, float(v), stamp, 0) for k, v in sorted(values.items()) if v is not None]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    plist = [Param(k, v) for k, v in sorted(params.items())]
    for i in range(0, len(plist), BATCH):
        client.log_batch(run_id, params=plist[i:i + BATCH])
    if artifacts:
        for file, sub in _artifact_files(folder, record):
            client.log_artifact(run_id, str(file), sub or None)
    client.set_terminated(run_id, end_time=end)
    return run_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO_ROOT / "results", help="folder of records (default results/)")
    ap.add_argument("--to", type=Path, default=Path("mlruns"), help="the MLflow file store (default ./mlruns)")
    ap.add_argument("--no-artifacts", action="store_true", help="log no files, only params, metrics and tags")
    a = ap.parse_args(argv)
    if not a.results.is_dir():
        print(f"error: --results {a.results}: not a folder of records", file=sys.stderr)
        return 2
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        print(f"error: exporting to MLflow needs the mlflow extra: {EXTRA}", file=sys.stderr)
        return 2
    # MLflow 3 keeps its file store (a plain folder, read without a server) behind this switch; a database
    # store would need SQLAlchemy. Set only when the user has not chosen.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=a.to.resolve().as_uri())
    results = a.results.resolve()
    records, problems = read_records(results)
    exported = skipped = 0
    for path, record in records:
        try:
            run_id = export_record(client, path, record, results, not a.no_artifacts)
        except ValueError as e:
            problems.append(str(e))
            continue
        except MlflowException as e:  # a name or value MLflow refuses: named, the other records still go
            problems.append(f"{path}: MLflow refused it: {e.message.splitlines()[0]}")
            continue
        if run_id is None:
            skipped += 1
        else:
            exported += 1
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    print(f"[export_mlflow] {exported} run(s) exported to {a.to}, {skipped} already there, {len(problems)} record(s) "
          f"not exported")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
