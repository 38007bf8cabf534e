"""Regression detection between two sets of records, metric by metric (TorchBench style).

Each metric has a `kind` (set where it was recorded, see `bench.core.records`), and each kind its own rule
and tolerance, from `references/regression.yaml`:

- `quality` (PPL, accuracy, FLOPs): relative tolerance per profile; the `cpu` and `smoke` profiles are
  deterministic, so it is tight.
- `count` (tokens, rounds): relative tolerance, 0 by default (exact).
- `timing` (latency, throughput, speed-up): compared as a ratio, and only between records made on the same
  device; a pair from different devices skips its timings.
- `memory` (MiB): relative tolerance, same device only (RSS depends on the allocator and the machine).

A metric whose `direction` is `none` is descriptive: a change is listed, never a failure. Metrics present
on one side only are listed. Per-metric overrides in the same file are fnmatch patterns on
`<paper>/<experiment>/<profile>:<metric>` (first match wins) setting `rel`, `abs` (an absolute tolerance,
for differences near zero), `ratio` or `kind`.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.core.paths import REPO_ROOT
from bench.core.records import KINDS, metric_kind

REGRESSION_FILE = REPO_ROOT / "references" / "regression.yaml"
# Used when references/regression.yaml is absent or leaves a kind out (the shipped file states the same).
DEFAULT_KINDS: dict[str, dict[str, Any]] = {
    "quality": {"rel": {"smoke": 1e-3, "cpu": 1e-3, "paper": 0.02}},
    "count": {"rel": 0.0},
    "timing": {"ratio": 1.25, "same_device": True},
    "memory": {"rel": 0.10, "same_device": True},
}


@dataclass
class Change:
    key: str  # paper/experiment/profile
    metric: str
    old: float | None
    new: float | None
    verdict: str  # "regressed" | "improved" | "changed" | "same" | "skipped (other device)" | "only in new" | ...
    tolerance: str

    def row(self) -> dict[str, Any]:
        rel = None
        if self.old not in (None, 0) and self.new is not None:
            rel = (self.new - self.old) / abs(self.old)
        return {"record": self.key, "metric": self.metric, "baseline": self.old, "new": self.new,
                "change": f"{rel:+.2%}" if rel is not None else "—", "tolerance": self.tolerance,
                "verdict": self.verdict}


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


def compare_records(old: dict[str, Any], new: dict[str, Any], rules: dict[str, Any] | None = None) -> list[Change]:
    """Changes between two records of the same (paper, experiment, profile)."""
    rules = rules or load_rules()
    key = f"{new['paper']}/{new['experiment']}/{new['profile']}"
    same_device = (old.get("env", {}).get("device_name") == new.get("env", {}).get("device_name"))
    out = []
    om, nm = old.get("metrics", {}), new.get("metrics", {})
    for name in sorted(set(om) | set(nm)):
        if name not in nm:
            out.append(Change(key, name, om[name].get("value"), None, "only in baseline", "—"))
            continue
        if name not in om:
            out.append(Change(key, name, None, nm[name].get("value"), "only in new", "—"))
            continue
        o, n = om[name].get("value"), nm[name].get("value")
        direction = nm[name].get("direction", "none")
        override = next((r for pat, r in rules["overrides"].items() if fnmatch.fnmatch(f"{key}:{name}", pat)), {})
        kind = override.get("kind") or metric_kind(nm[name])  # the new record says what the number is
        rule = {**rules["kinds"][kind], **{k: v for k, v in override.items() if k != "kind"}}
        if o is None or n is None:
            verdict = "same" if o is n else ("regressed" if direction != "none" and n is None else "changed")
            out.append(Change(key, name, o, n, verdict, "non-finite"))
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


def compare_sets(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
                 rules: dict[str, Any] | None = None) -> list[Change]:
    """`old`/`new` map a record key (relative path) to its record."""
    changes = []
    for k in sorted(set(old) | set(new)):
        if k not in new:
            changes.append(Change(k, "*", None, None, "record only in baseline", "—"))
        elif k not in old:
            changes.append(Change(k, "*", None, None, "record only in new", "—"))
        else:
            changes += compare_records(old[k], new[k], rules)
    return changes
