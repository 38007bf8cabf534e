"""Toy experiment `pi`: pi estimated as 4 x the share of uniform points of the unit square that fall inside
the quarter disc (Eq. 2 of the toy paper), drawn in batches. Metric `pi` (with its binomial standard error);
the running estimate after each batch in `pi_running.csv`, drawn by `figures.draw_pi`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import Num, Rule
from toy import figures


@dataclass
class PiSettings:
    """The sample (`experiment.*`); the defaults are the toy paper's."""

    samples: int = setting(1_000_000, Num(int, 1, 10**9), "points drawn in the unit square")
    batch: int = setting(100_000, Num(int, 1, 10**7), "points drawn per batch (bounds the memory)")


PI_RULES = [Rule(("batch", "samples"), lambda b, n: b <= n, "batch {0} is larger than the {1} samples", "batch")]


@experiment(settings=PiSettings, rules=PI_RULES, figures=figures.draw_pi)
def pi(ctx: RunContext) -> None:
    """Estimate pi from points of the unit square, recording the running estimate after each batch."""
    e = ctx.cfg.experiment
    rng = np.random.default_rng(int(ctx.cfg.seed))
    n, batch = int(e.samples), int(e.batch)
    inside = drawn = 0
    rows = []
    while drawn < n:
        m = min(batch, n - drawn)
        xy = rng.random((m, 2))  # (m, 2) uniform in [0, 1)^2
        inside += int(((xy ** 2).sum(axis=1) <= 1.0).sum())
        drawn += m
        rows.append({"samples": drawn, "pi": 4 * inside / drawn})
    p = inside / n
    stderr = 4 * math.sqrt(p * (1 - p) / n)  # binomial standard error of 4 p
    ctx.metric("pi", 4 * p, "1", "none", note=f"{n} samples", stderr=stderr)
    ctx.log(f"pi ~ {4 * p:.5f} +- {stderr:.5f} from {n} samples")
    ctx.csv("pi_running", rows)
