"""Result records: one `record.json` per (paper, experiment, profile) run.

Schema version 1, as a JSON Schema (draft 2020-12) in `record_v1.schema.json` beside this module, which
`check_record` (hence every reader) applies; documented in docs/results.md "The record":

    {
      "schema_version": 1,
      "paper": "streaming_llm", "experiment": "ppl_table1", "profile": "cpu",
      "created": "2026-11-24T23:00:00+00:00", "duration_s": 812.4,
      "metrics": {"ppl.streaming.4+1020": {"value": 10.3, "unit": "ppl", "direction": "lower",
                                          "kind": "quality", "note": "...", "stderr": null}},
      "config": {... resolved Hydra config ...},
      "env": {... llm_efficiency_bench.core.env.capture() ...},
      "artifacts": {"tables": ["table.md"], "csv": ["per_token.csv"], "figures": ["ppl.png"]},
      "extra": {... experiment-specific provenance ...}
    }

`direction` is "lower" or "higher" (which way is better) or "none" (descriptive, e.g. token counts).
`kind` says what the number is, so a regression check knows how much it may move (per-kind tolerances in
`references/regression.yaml`): `quality` (PPL, accuracy, FLOPs, ratios of those: deterministic),
`timing` (latencies, throughputs, speed-ups: machine- and load-dependent), `memory` (MiB: allocator- and
machine-dependent) or `count` (tokens, rounds: exact). It is set where the metric is recorded; when omitted
it is inferred from the unit (`infer_kind`). Records written before `kind` existed have none: readers infer
it the same way.

Where a record lives and how a run publishes it (staging, history, resume state): `run_folder.py`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

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


SCHEMA_FILE = Path(__file__).with_name("record_v1.schema.json")  # JSON Schema (draft 2020-12) of version 1


def write_record(directory: Path, record: Record) -> Path:
    """Write `directory/record.json` atomically. A record is never overwritten: one already there raises
    (`RunFolder.write_record` moves the earlier run to `history/` first).

    Raises:
        FileExistsError: `directory/record.json` exists.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "record.json"
    if path.exists():
        raise FileExistsError(f"{path} exists: a record is never overwritten (RunFolder.write_record keeps "
                              "the earlier run in history/)")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


@functools.cache
def schema_validator() -> Any:
    """The draft 2020-12 validator of `record_v1.schema.json`, built once per process."""
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def check_record(data: Any, source: str) -> dict[str, Any]:
    """Check a decoded record against schema version 1 (`record_v1.schema.json`); returns it unchanged.

    Raises:
        RecordError: one line naming `source`, where in the record, and what is wrong, e.g.
            `.../record.json: metrics['ppl.dense'].value: '12' is not a number or null`. Of several problems
            the shallowest is named (a missing `paper` before a metric's bad unit).
    """
    if not isinstance(data, dict):
        raise RecordError(f"{source}: not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):  # another version's fields mean other things
        raise RecordError(f"{source}: schema_version {version!r} is not {SCHEMA_VERSION}")
    errors = list(schema_validator().iter_errors(data))
    if errors:
        first = min(errors, key=lambda e: (len(e.absolute_path), [str(k) for k in e.absolute_path]))
        raise RecordError(f"{source}: {_where(first.absolute_path)}: {_what(first)}")
    return data


_TYPE_WORDS = {"number": "a number", "integer": "an integer", "string": "a string", "object": "an object",
               "array": "a list", "boolean": "a boolean", "null": "null"}


def _where(path: Iterable[str | int]) -> str:
    """A field's place in the record as Python would index it: `metrics['ppl.dense'].value`, `record` (the top)."""
    out = ""
    for k in path:
        if isinstance(k, int):
            out += f"[{k}]"
        elif k.isidentifier():
            out += f".{k}" if out else k
        else:
            out += f"[{k!r}]"
    return out or "record"


def _what(error: Any) -> str:
    """What is wrong, in one short line, from a `jsonschema.ValidationError`."""
    value, rule, want = error.instance, error.validator, error.validator_value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    if rule == "type":
        return f"{shown} is not " + " or ".join(_TYPE_WORDS[t] for t in ([want] if isinstance(want, str) else want))
    if rule == "enum":
        return f"{shown} is not one of {', '.join(map(str, want))}"
    if rule == "const":
        return f"{shown} is not {want!r}"
    if rule == "required":
        return "missing " + ", ".join(repr(k) for k in want if k not in value)
    if rule == "additionalProperties":  # `false` in the schema: a field version 1 does not have
        known = error.schema.get("properties", {})
        return (f"unknown field {', '.join(repr(k) for k in value if k not in known)} "
                f"(version 1 has {', '.join(known)})")
    if rule == "minLength":
        return "is empty"
    if rule == "minimum":
        return f"{shown} is below {want}"
    return error.message


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
    return check_record(data, str(path))


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
