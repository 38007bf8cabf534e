"""Regression detection between two sets of records, metric by metric (TorchBench style).

Quality metrics (PPL, accuracy, FLOPs, ...) are compared with a tight relative tolerance: the `cpu` and
`smoke` profiles are deterministic. Timing metrics are compared as ratios, and only between records made
on the same device; a record pair from different devices skips its timings. A metric whose `direction` is
`none` is descriptive: a change is listed, never a failure. Metrics present on one side only are listed.
Per-metric tolerances can be set in `references/regression.yaml` (fnmatch patterns).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.core.paths import REPO_ROOT

TIMING_UNITS = {"ms", "s", "tokens/s", "tok/s", "it/s"}
TIMING_PREFIXES = ("latency", "throughput", "speedup", "e2e_speedup", "decode_tok_s", "prefill_ms", "ttft_ms",
                   "wall")
DEFAULTS = {"quality_rel": {"smoke": 1e-3, "cpu": 1e-3, "paper": 0.02}, "timing_ratio": 1.25}


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


def load_overrides(path: Path = REPO_ROOT / "references" / "regression.yaml") -> dict[str, Any]:
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def is_timing(name: str, unit: str) -> bool:
    return unit in TIMING_UNITS or name.split(".")[0] in TIMING_PREFIXES


def compare_records(old: dict[str, Any], new: dict[str, Any], overrides: dict[str, Any] | None = None) -> list[Change]:
    """Changes between two records of the same (paper, experiment, profile)."""
    overrides = overrides or {}
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
        unit, direction = nm[name].get("unit", ""), nm[name].get("direction", "none")
        tol = next((v for pat, v in overrides.items() if fnmatch.fnmatch(f"{key}:{name}", pat)), None)
        if o is None or n is None:
            verdict = "same" if o is n else ("regressed" if direction != "none" and n is None else "changed")
            out.append(Change(key, name, o, n, verdict, "non-finite"))
            continue
        if is_timing(name, unit):
            if not same_device:
                out.append(Change(key, name, o, n, "skipped (other device)", "timing"))
                continue
            limit = float(tol if tol is not None else DEFAULTS["timing_ratio"])
            ratio = (n / o if direction == "lower" else o / n) if o and n else 1.0
            verdict = "regressed" if ratio > limit else ("improved" if ratio < 1 / limit else "same")
            out.append(Change(key, name, o, n, verdict, f"ratio {limit}x"))
            continue
        rel_tol = float(tol if tol is not None else DEFAULTS["quality_rel"].get(new["profile"], 0.02))
        scale = max(abs(o), 1e-12)
        rel = (n - o) / scale
        if abs(rel) <= rel_tol or math.isclose(o, n, abs_tol=1e-12):
            verdict = "same"
        elif direction == "none":
            verdict = "changed"
        elif (direction == "lower") == (rel > 0):
            verdict = "regressed"
        else:
            verdict = "improved"
        out.append(Change(key, name, o, n, verdict, f"±{rel_tol:.1%}"))
    return out


def compare_sets(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
                 overrides: dict[str, Any] | None = None) -> list[Change]:
    """`old`/`new` map a record key (relative path) to its record."""
    changes = []
    for k in sorted(set(old) | set(new)):
        if k not in new:
            changes.append(Change(k, "*", None, None, "record only in baseline", "—"))
        elif k not in old:
            changes.append(Change(k, "*", None, None, "record only in new", "—"))
        else:
            changes += compare_records(old[k], new[k], overrides)
    return changes
