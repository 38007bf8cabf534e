"""Runs of the micro-benchmarks (`make bench`): reading their pytest-benchmark JSON, the speed-ratio goals,
and the machine a run comes from.

A benchmark stores each speed ratio it measured in `extra_info`: `<key>` is the median of its per-round
ratios (`llm_efficiency_bench.core.ratios`), `<key>_rounds` the per-round ratios themselves and `about[<key>]` one line
saying what is compared. A goal names a ratio and, optionally, a bound: `[BENCH:]KEY>=VALUE`,
`[BENCH:]KEY<=VALUE` or `[BENCH:]KEY` (reported, no goal), where BENCH is a substring of the benchmark's
name. A goal is a statement about an idle machine: a run that misses it reports "NOT MET", it does not fail.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_efficiency_bench.core.env import _git, cpu_model
from llm_efficiency_bench.core.ratios import Spread, spread

# What the benchmarks' numbers depend on: a run from a tree with edits here does not name its code.
CODE_PATHS = ("llm_efficiency_bench", "benchmarks", "reproduce", "pyproject.toml", "Makefile")
_GOAL = re.compile(r"^(?:(?P<bench>[^:<>=]+):)?(?P<key>[\w.]+)(?:(?P<op>>=|<=)(?P<value>[-+0-9.eE]+))?$")


class BenchFileError(ValueError):
    """A benchmark JSON file is missing, unreadable or not a pytest-benchmark file; the message names it."""


@dataclass(frozen=True)
class Goal:
    """A ratio to report, with an optional bound (`op` None: reported only)."""

    spec: str
    key: str
    bench: str | None = None
    op: str | None = None
    bound: float | None = None

    @property
    def name(self) -> str:
        """The ratio's name in tables and records, e.g. `chunked_vs_token.speedup`."""
        return f"{self.bench}.{self.key}" if self.bench else self.key

    @property
    def direction(self) -> str:
        """Which way is better: `higher` for a floor, `lower` for a ceiling, `none` without a bound."""
        return {">=": "higher", "<=": "lower"}.get(self.op or "", "none")

    @property
    def text(self) -> str:
        return f"{self.op} {self.bound:g}" if self.op else "—"

    def met(self, value: float) -> bool | None:
        if self.op is None:
            return None
        return value >= self.bound if self.op == ">=" else value <= self.bound


def parse_goal(spec: str) -> Goal:
    """`[BENCH:]KEY[>=|<=VALUE]` -> Goal.

    Raises:
        ValueError: naming the spec, when it has another form.
    """
    m = _GOAL.match(spec.replace(" ", ""))
    if m is None:
        raise ValueError(f"--ratio {spec!r}: expected [BENCH:]KEY, [BENCH:]KEY>=VALUE or [BENCH:]KEY<=VALUE")
    bound = float(m["value"]) if m["op"] else None
    return Goal(spec, m["key"], m["bench"], m["op"], bound)


def load_run(path: str | Path) -> dict[str, Any]:
    """A pytest-benchmark JSON file (`--benchmark-json`), checked for what the readers here use.

    Raises:
        BenchFileError: the file is missing, unreadable, not JSON, or has no `benchmarks` list.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchFileError(f"{path}: no such file (`make bench` writes .benchmarks/latest.json)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BenchFileError(f"{path}: cannot read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchFileError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); partial or corrupt file") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) \
            or not all(isinstance(b, dict) and "fullname" in b for b in data["benchmarks"]):
        raise BenchFileError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list with names)")
    return data


@dataclass
class Measured:
    """One ratio as one run measured it."""

    name: str
    benchmark: str
    spread: Spread
    about: str = ""
    rounds: list[float] = field(default_factory=list)


def measured(run: dict[str, Any], goal: Goal) -> list[Measured]:
    """Every measurement of `goal`'s ratio in one run (none when its benchmark did not run)."""
    hits = [b for b in sorted(run["benchmarks"], key=lambda b: b["fullname"])
            if goal.key in (b.get("extra_info") or {}) and (goal.bench is None or goal.bench in b["fullname"])]
    out = []
    for b in hits:
        extra = b["extra_info"]
        rounds = extra.get(f"{goal.key}_rounds")
        rounds = [float(x) for x in rounds] if isinstance(rounds, list) and rounds else [float(extra[goal.key])]
        name = goal.name if len(hits) == 1 else f"{goal.name}[{b['fullname'].rsplit('::', 1)[-1]}]"
        about = (extra.get("about") or {}).get(goal.key, "") if isinstance(extra.get("about"), dict) else ""
        out.append(Measured(name, b["fullname"], spread(rounds), about, rounds))
    return out


def slug(text: str) -> str:
    """Lower-case words joined by '-', for folder names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def machine_env() -> dict[str, Any]:
    """The machine and code a run comes from: cpu model, cores, threads, torch, git sha and dirty flag.

    `machine` (cpu model + core count) names the folder of the machine's record: timings are compared only
    between runs of one machine.
    """
    import torch

    porcelain = _git("status", "--porcelain", "--", *CODE_PATHS)
    cores = os.cpu_count()
    return {"machine": f"{slug(cpu_model())}-{cores}cpu", "cpu_model": cpu_model(), "cpu_count": cores,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "git_sha": _git("rev-parse", "HEAD"), "git_dirty": bool(porcelain) if porcelain is not None else None}
