"""Regression detection between two sets of records, metric by metric (TorchBench style).

Each metric has a `kind` (set where it was recorded, see `llm_efficiency_bench.core.records`), and each kind its own rule
and tolerance, from `references/regression.yaml`:

- `quality` (PPL, accuracy, FLOPs): relative tolerance per profile; the `cpu` and `smoke` profiles are
  deterministic, so it is tight.
- `count` (tokens, rounds): relative tolerance, 0 by default (exact).
- `timing` (latency, throughput, speed-up): compared as a ratio, and only between records made on the same
  device; a pair from different devices skips its timings.
- `memory` (MiB): relative tolerance, same device only (RSS depends on the allocator and the machine).

A metric whose `direction` is `none` is descriptive: a change is listed, never a failure. A metric only in
the new record is listed. Per-metric overrides in the same file are fnmatch patterns on
`<paper>/<experiment>/<profile>:<metric>` (first match wins) setting `rel`, `abs` (an absolute tolerance,
for differences near zero), `ratio` or `kind`.

What the gate cannot vouch for is `invalid` (a failure, with `problem` saying what is wrong), never a
large change or an improvement: a NaN or infinite value (JSON readers accept `NaN` and `Infinity`, the
suite's writer never emits them), a value that became null (non-finite when recorded), a metric of the
baseline missing from the new record, an empty `metrics` block, a changed unit or direction (the two
numbers no longer measure the same thing), and a record whose paper / experiment / profile disagree with
the folder it lies in (`folder_problem`).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llm_efficiency_bench.core.paths import REPO_ROOT
from llm_efficiency_bench.core.records import KINDS, metric_kind

REGRESSION_FILE = REPO_ROOT / "references" / "regression.yaml"
# Used when references/regression.yaml is absent or leaves a kind out (the shipped file states the same).
DEFAULT_KINDS: dict[str, dict[str, Any]] = {
    "quality": {"rel": {"smoke": 1e-3, "cpu": 1e-3, "paper": 0.02}},
    "count": {"rel": 0.0},
    "timing": {"ratio": 1.25, "same_device": True},
    "memory": {"rel": 0.10, "same_device": True},
}


FAILING = ("regressed", "invalid")


@dataclass
class Change:
    key: str  # paper/experiment/profile
    metric: str
    old: float | None
    new: float | None
    verdict: str  # "regressed" | "improved" | "changed" | "same" | "invalid" | "skipped (other device)" | ...
    tolerance: str
    problem: str = ""  # what is wrong, when the verdict is "invalid"
    path: str = ""  # the record's path relative to the results folder (set by `compare_sets`)

    @property
    def failed(self) -> bool:
        """Whether this change fails the gate."""
        return self.verdict in FAILING

    def row(self) -> dict[str, Any]:
        rel = None
        if self.old not in (None, 0) and self.new is not None:
            rel = (self.new - self.old) / abs(self.old)
        return {"record": self.key, "metric": self.metric, "baseline": self.old, "new": self.new,
                "change": f"{rel:+.2%}" if rel is not None else "—", "tolerance": self.tolerance,
                "verdict": f"invalid: {self.problem}" if self.problem else self.verdict}


def load_rules(path: Path = REGRESSION_FILE) -> dict[str, Any]:
    """`{"kinds": {kind: rule}, "overrides": {pattern: rule}}` from the tolerance file (defaults filled in).

    Raises:
        ValueError: naming the file when a kind or an override rule is malformed.
    """
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    data = data or {}
    kinds = {k: dict(v) for k, v in DEFAULT_KINDS.items()}
    for k, rule in (data.get("kinds") or {}).items():
        if k not in KINDS or not isinstance(rule, dict):
            raise ValueError(f"{path}: kinds.{k} must be one of {KINDS} with a mapping of settings")
        kinds[k].update(rule)
    overrides = data.get("overrides") or {}
    for pat, rule in overrides.items():
        if not isinstance(rule, dict) or not set(rule) <= {"rel", "abs", "ratio", "kind"}:
            raise ValueError(f"{path}: overrides[{pat!r}] must be a mapping of rel / abs / ratio / kind")
    return {"kinds": kinds, "overrides": overrides}


def _rel_tol(rule: dict[str, Any], profile: str) -> float:
    rel = rule.get("rel", 0.0)
    return float(rel.get(profile, max(rel.values())) if isinstance(rel, dict) else rel)


def _direction_verdict(direction: str, worse: bool, better: bool) -> str:
    if not (worse or better):
        return "same"
    if direction == "none":
        return "changed"
    return "regressed" if worse else "improved"


def _nonfinite(v: Any) -> str | None:
    """'NaN', '+Infinity' or '-Infinity' for a non-finite float, else None."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("+Infinity" if v > 0 else "-Infinity")
    return None


def _invalid(key: str, name: str, o: Any, n: Any, problem: str) -> Change:
    return Change(key, name, o, n, "invalid", "—", problem)


def _pair_problem(om: dict[str, Any], nm: dict[str, Any]) -> str | None:
    """Why a metric present in both records cannot be compared, or None."""
    o, n = om.get("value"), nm.get("value")
    if _nonfinite(n):
        return f"value is {_nonfinite(n)}" + (" (never an improvement)" if "Inf" in _nonfinite(n) else "")
    if _nonfinite(o):
        return f"baseline value is {_nonfinite(o)}: nothing to compare with"
    if om.get("unit") != nm.get("unit"):
        return f"unit changed from {om.get('unit')!r} to {nm.get('unit')!r}"
    if om.get("direction", "none") != nm.get("direction", "none"):
        return f"direction changed from {om.get('direction', 'none')!r} to {nm.get('direction', 'none')!r}"
    if n is None and o is not None:
        return f"value is null (non-finite when recorded; baseline {o:g})"
    return None


def compare_records(old: dict[str, Any], new: dict[str, Any], rules: dict[str, Any] | None = None) -> list[Change]:
    """Changes between two records of the same (paper, experiment, profile)."""
    rules = rules or load_rules()
    key = f"{new['paper']}/{new['experiment']}/{new['profile']}"
    same_device = (old.get("env", {}).get("device_name") == new.get("env", {}).get("device_name"))
    out = []
    om, nm = old.get("metrics", {}), new.get("metrics", {})
    if not nm:
        return [_invalid(key, "*", None, None, f"empty metrics block ({len(om)} metric(s) in the baseline)")]
    for name in sorted(set(om) | set(nm)):
        if name not in nm:
            out.append(_invalid(key, name, om[name].get("value"), None, "missing from the new record"))
            continue
        if name not in om:
            bad = _nonfinite(nm[name].get("value"))
            out.append(_invalid(key, name, None, None, f"value is {bad}") if bad else
                       Change(key, name, None, nm[name].get("value"), "only in new", "—"))
            continue
        problem = _pair_problem(om[name], nm[name])
        if problem:
            out.append(_invalid(key, name, om[name].get("value"), nm[name].get("value"), problem))
            continue
        o, n = om[name].get("value"), nm[name].get("value")
        direction = nm[name].get("direction", "none")
        override = next((r for pat, r in rules["overrides"].items() if fnmatch.fnmatch(f"{key}:{name}", pat)), {})
        kind = override.get("kind") or metric_kind(nm[name])  # the new record says what the number is
        rule = {**rules["kinds"][kind], **{k: v for k, v in override.items() if k != "kind"}}
        if o is None or n is None:  # null in both: same; a number where the baseline had null: listed
            out.append(Change(key, name, o, n, "same" if o is n else "changed", "non-finite"))
            continue
        if rule.get("same_device") and not same_device:
            out.append(Change(key, name, o, n, "skipped (other device)", kind))
            continue
        if "ratio" in rule:  # timing: a factor either way, judged in the better direction
            limit = float(rule["ratio"])
            ratio = (n / o if direction == "lower" else o / n) if o and n else 1.0
            verdict = "regressed" if ratio > limit else ("improved" if ratio < 1 / limit else "same")
            out.append(Change(key, name, o, n, verdict, f"{kind}: ratio {limit}x"))
            continue
        rel_tol, abs_tol = _rel_tol(rule, new["profile"]), float(rule.get("abs", 1e-12))
        rel = (n - o) / max(abs(o), 1e-12)
        moved = abs(rel) > rel_tol and not math.isclose(o, n, abs_tol=abs_tol)  # outside both tolerances
        worse = moved and (direction == "lower") == (rel > 0)
        verdict = _direction_verdict(direction, worse, moved and not worse)
        tol_text = f"±{rel_tol:.1%}" + (f" or ±{abs_tol:g}" if "abs" in rule else "")
        out.append(Change(key, name, o, n, verdict, f"{kind}: {tol_text}"))
    return out


def record_problems(rec: dict[str, Any]) -> list[Change]:
    """What makes a record unusable on its own (no baseline needed): no metrics, non-finite values."""
    key = f"{rec['paper']}/{rec['experiment']}/{rec['profile']}"
    if not rec.get("metrics"):
        return [_invalid(key, "*", None, None, "empty metrics block")]
    return [_invalid(key, name, None, None, f"value is {_nonfinite(m.get('value'))}")
            for name, m in sorted(rec["metrics"].items()) if _nonfinite(m.get("value"))]


def folder_problem(path: Path, rec: dict[str, Any]) -> str | None:
    """Why `path` (a `record.json`) is not where its record belongs, or None.

    A record lies in `<paper>/<experiment>/<profile>/` or one sub-folder below it (a sweep job's
    `run_tag`); a `smoke` record inside a `cpu/` folder would be compared with, and pass as, a `cpu` run.
    """
    want = (rec["paper"], rec["experiment"], rec["profile"])
    folders = Path(path).parent.parts
    if tuple(folders[-3:]) == want or tuple(folders[-4:-1]) == want:
        return None
    where = "/".join(folders[-3:])
    fields = [f"{f} {w!r}" for f, w, got in zip(("paper", "experiment", "profile"), want, folders[-3:]) if w != got]
    return f"record says {', '.join(fields) or '/'.join(want)} but lies in {where}/"


def compare_sets(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
                 rules: dict[str, Any] | None = None) -> list[Change]:
    """`old`/`new` map a record key (relative path) to its record; each change carries that path."""
    changes = []
    for k in sorted(set(old) | set(new)):
        if k not in new:
            got = [Change(k, "*", None, None, "record only in baseline", "—")]
        elif k not in old:
            got = record_problems(new[k]) or [Change(k, "*", None, None, "record only in new", "—")]
        else:
            got = compare_records(old[k], new[k], rules)
        for c in got:
            c.path = k
        changes += got
    return changes
