"""Result records: one `record.json` per (paper, experiment, profile) run.

Schema (version 1), documented in README "Result records":

    {
      "schema_version": 1,
      "paper": "streaming_llm", "experiment": "ppl_table1", "profile": "cpu",
      "created": "2026-11-24T23:00:00+00:00", "duration_s": 812.4,
      "metrics": {"ppl.streaming.4+1020": {"value": 10.3, "unit": "ppl", "direction": "lower",
                                          "kind": "quality", "note": "...", "stderr": null}},
      "config": {... resolved Hydra config ...},
      "env": {... llm_efficiency_bench.core.env.capture() ...},
      "artifacts": {"tables": ["table.md"], "csv": ["per_token.csv"], "figures": ["ppl.png"]}
    }

`direction` is "lower" or "higher" (which way is better) or "none" (descriptive, e.g. token counts).
`kind` says what the number is, so a regression check knows how much it may move (per-kind tolerances in
`references/regression.yaml`): `quality` (PPL, accuracy, FLOPs, ratios of those: deterministic),
`timing` (latencies, throughputs, speed-ups: machine- and load-dependent), `memory` (MiB: allocator- and
machine-dependent) or `count` (tokens, rounds: exact). It is set where the metric is recorded; when omitted
it is inferred from the unit (`infer_kind`). Records written before `kind` existed have none: readers infer
it the same way.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1
Direction = Literal["lower", "higher", "none"]
DIRECTIONS = ("lower", "higher", "none")
KINDS = ("quality", "timing", "count", "memory")
# Units that say what a number is when the recorder gave no kind (a speed-up in "x" is not one of them:
# its recorder says kind="timing").
_UNIT_KINDS = {"ms": "timing", "s": "timing", "tokens/s": "timing", "tok/s": "timing", "it/s": "timing",
               "MiB": "memory", "MB": "memory", "GiB": "memory", "GB": "memory", "bytes": "memory",
               "tokens": "count", "rounds": "count", "forwards": "count", "steps": "count", "count": "count"}


def infer_kind(unit: str) -> str:
    """The default kind of a metric with this unit: timing, memory or count units, else quality."""
    return _UNIT_KINDS.get(unit, "quality")


def metric_kind(m: dict[str, Any]) -> str:
    """The kind of a stored metric: its own, or inferred from its unit (records older than `kind`)."""
    kind = m.get("kind")
    return kind if kind in KINDS else infer_kind(str(m.get("unit", "")))


class RecordError(ValueError):
    """A record file is corrupt, partial or of an unknown schema; the message names the file."""


@dataclass
class Metric:
    """A measured value with its unit, which direction is better, and what kind of number it is."""

    value: float
    unit: str
    direction: Direction
    note: str = ""
    stderr: float | None = None
    kind: str = "quality"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": _finite_or_none(self.value), "unit": self.unit, "direction": self.direction,
                             "kind": self.kind}
        if self.note:
            d["note"] = self.note
        if self.stderr is not None:
            d["stderr"] = _finite_or_none(self.stderr)
        return d


def _finite_or_none(x: float | None) -> float | None:
    """JSON has no NaN/inf: store them as null (the note says why) so readers never choke."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Record:
    """An experiment's outcome, written as `record.json`."""

    paper: str
    experiment: str
    profile: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, list[str]] = field(default_factory=dict)
    created: str = ""
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str, direction: Direction, note: str = "",
            stderr: float | None = None, kind: str | None = None) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"metric {name}: direction must be one of {DIRECTIONS}")
        kind = kind or infer_kind(unit)
        if kind not in KINDS:
            raise ValueError(f"metric {name}: kind must be one of {KINDS}")
        self.metrics[name] = Metric(float(value), unit, direction, note, stderr, kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "paper": self.paper,
            "experiment": self.experiment,
            "profile": self.profile,
            "created": self.created or now_iso(),
            "duration_s": self.duration_s,
            "metrics": {k: m.to_dict() for k, m in sorted(self.metrics.items())},
            "config": self.config,
            "env": self.env,
            "artifacts": self.artifacts,
            "extra": self.extra,
        }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def run_dir(results_dir: str | Path, paper: str, experiment: str, profile: str) -> Path:
    """`results/<paper>/<experiment>/<profile>/`."""
    return Path(results_dir) / paper / experiment / profile


STAGING_PREFIX = ".staging-"
FAILED = ".failed-run"  # the partial output of the last failed run in this folder (replaced each time)


def write_record(directory: Path, record: Record) -> Path:
    """Write `record.json` atomically; an earlier run in `directory` is first moved whole to `history/`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "record.json"
    if path.exists():
        archive_run(directory)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def _run_files(directory: Path) -> list[Path]:
    """The files of the run published in `directory`: its record, the artifacts it lists, and every other
    plain top-level file. Hidden entries (checkpoints, staging), `history/` and sub-folders (the sweep jobs
    beside it, `run_tag`) belong to other runs and are never included."""
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    try:
        arts = json.loads((directory / "record.json").read_text()).get("artifacts") or {}
    except (OSError, ValueError, AttributeError):
        arts = {}
    for rel in (r for lst in arts.values() if isinstance(lst, list) for r in lst):
        p = directory / str(rel)
        if p.is_file() and ".." not in Path(rel).parts and p not in files:
            files.append(p)
    return files


def archive_run(directory: Path) -> Path | None:
    """Move the run published in `directory` to `history/<its created stamp>/` (same relative paths)."""
    files = _run_files(directory)
    if not files:
        return None
    try:
        created = json.loads((directory / "record.json").read_text()).get("created", "")
    except (OSError, ValueError, AttributeError):
        created = ""
    stamp = (created or f"unrecorded-{now_iso()}").replace(":", "").replace("+0000", "Z")
    target = directory / "history" / stamp
    n = 1
    while target.exists():
        target = directory / "history" / f"{stamp}-{n}"
        n += 1
    for f in files:
        dest = target / f.relative_to(directory)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(f, dest)
    print(f"[records] earlier run kept as {target}")
    return target


def stage_dir(directory: Path) -> Path:
    """A fresh staging folder `<directory>/.staging-<pid>/` for one run; stagings left by dead processes
    (a kill -9) are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(STAGING_PREFIX + "*"):
        pid = old.name[len(STAGING_PREFIX):]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(old, ignore_errors=True)
    staging = directory / f"{STAGING_PREFIX}{os.getpid()}"
    staging.mkdir()
    return staging


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(staging: Path, directory: Path) -> Path:
    """Publish a finished run: the earlier run moves to `history/`, then every staged file moves in, the
    record last (a reader never sees the new record beside the old CSVs). Returns the record path."""
    if (directory / "record.json").exists() or _run_files(directory):
        archive_run(directory)
    staged = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: p.name == "record.json")
    for f in staged:
        dest = directory / f.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return directory / "record.json"


def discard(staging: Path, directory: Path) -> Path:
    """A failed run publishes nothing: its partial output is kept as `<directory>/.failed-run/` (the
    previous failed run's is replaced) for inspection, and the published run is untouched."""
    failed = directory / FAILED
    shutil.rmtree(failed, ignore_errors=True)
    os.replace(staging, failed)
    return failed


def validate(data: Any, source: str) -> dict[str, Any]:
    """Check a decoded record against schema version 1.

    Raises:
        RecordError: naming `source` and the first problem found.
    """
    def bad(msg: str) -> RecordError:
        return RecordError(f"{source}: {msg}")

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise bad(f"schema_version {version!r} is not {SCHEMA_VERSION}")
    for key in ("paper", "experiment", "profile"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise bad(f"missing or empty '{key}'")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise bad("'metrics' is not an object")
    for name, m in metrics.items():
        if not isinstance(m, dict):
            raise bad(f"metric {name!r} is not an object")
        if m.get("direction") not in DIRECTIONS:
            raise bad(f"metric {name!r} has direction {m.get('direction')!r}")
        v = m.get("value")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise bad(f"metric {name!r} value {v!r} is not a number")
        if not isinstance(m.get("unit"), str):
            raise bad(f"metric {name!r} has no unit")
        if "kind" in m and m["kind"] not in KINDS:  # absent in records older than `kind`: inferred
            raise bad(f"metric {name!r} has kind {m['kind']!r}; expected one of {KINDS}")
    for key in ("config", "env"):
        if not isinstance(data.get(key, {}), dict):
            raise bad(f"'{key}' is not an object")
    return data


def read_record(path: str | Path) -> dict[str, Any]:
    """Read and validate one record; any problem raises RecordError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecordError(f"{path}: cannot read ({e})") from e
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); corrupt record") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); partial or corrupt record") from e
    return validate(data, str(path))


def find_records(results_dir: str | Path) -> list[Path]:
    """All current `record.json` files below `results_dir` (not the archived history)."""
    root = Path(results_dir)
    return sorted(p for p in root.rglob("record.json") if "history" not in p.parts and ".checkpoint" not in p.parts)


def read_records(root: str | Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[str]]:
    """Every current record under `root`: (path, record) for each readable one, and one message (naming the
    file) for each corrupt or unreadable one. The one reader of a results folder (report and check)."""
    records, problems = [], []
    for path in find_records(root):
        try:
            records.append((path, read_record(path)))
        except RecordError as e:
            problems.append(str(e))
    return records, problems
