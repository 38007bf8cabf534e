"""Toy experiment `fit`: points sampled on the line y = a x + b (Eq. 1 of the toy paper) with Gaussian noise,
and the line recovered by least squares. Metrics `slope`, `intercept` (with their standard errors) and
`residual_rms`; the points and the fitted line in `points.csv`, drawn by `figures.draw_fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import ListOf, Num, Rule
from toy import figures


@dataclass
class FitSettings:
    """The line and its sample (`experiment.*`); the defaults are the toy paper's (Eq. 1)."""

    points: int = setting(10_000, Num(int, 3, 10**7), "points sampled (at least 3: a fit with a residual)")
    slope: float = setting(2.0, Num(float, -1e6, 1e6), "the true slope a")
    intercept: float = setting(0.5, Num(float, -1e6, 1e6), "the true intercept b")
    x_range: list[float] = setting([0.0, 1.0], ListOf(Num(float, -1e6, 1e6), min_len=2),
                                   "x is drawn uniformly from [lo, hi]")


FIT_RULES = [
    Rule(("x_range",), lambda r: len(r) == 2 and r[0] < r[1], "x_range {0} must be [lo, hi] with lo < hi",
         "x_range"),
    # A line the noise drowns has no slope to recover: the rise over the range must exceed one noise s.d.
    Rule(("slope", "x_range", "/toy.noise"), lambda a, r, s: abs(a) * (r[-1] - r[0]) > s,
         "a slope of {0} over {1} rises less than the noise (toy.noise = {2})", "slope"),
]


@experiment(settings=FitSettings, rules=FIT_RULES, figures=figures.draw_fit)
def fit(ctx: RunContext) -> None:
    """Sample the line, fit it by least squares, and record what the fit recovers."""
    e = ctx.cfg.experiment
    rng = np.random.default_rng(int(ctx.cfg.seed))
    n, noise = int(e.points), float(ctx.cfg.toy.noise)
    lo, hi = (float(v) for v in e.x_range)
    x = rng.uniform(lo, hi, n)  # (n,)
    y = float(e.slope) * x + float(e.intercept) + rng.normal(0.0, noise, n)  # (n,)
    design = np.stack([x, np.ones_like(x)], axis=1)  # (n, 2)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - (a * x + b)
    s2 = float(resid @ resid) / (n - 2)  # unbiased residual variance (2 fitted parameters)
    cov = s2 * np.linalg.inv(design.T @ design)  # (2, 2): covariance of (a, b)
    ctx.metric("slope", float(a), "1", "none", note=f"true slope {float(e.slope):g}", stderr=float(np.sqrt(cov[0, 0])))
    ctx.metric("intercept", float(b), "1", "none", note=f"true intercept {float(e.intercept):g}",
               stderr=float(np.sqrt(cov[1, 1])))
    ctx.metric("residual_rms", float(np.sqrt(np.mean(resid ** 2))), "1", "lower", note=f"noise s.d. {noise:g}")
    ctx.log(f"{n} points: slope {a:.4f}, intercept {b:.4f}")
    ctx.csv("points", [{"x": float(xi), "y": float(yi), "fit": float(a * xi + b)} for xi, yi in zip(x, y)])
    ctx.table("fit", "Least-squares fit of y = a x + b", [
        {"parameter": "slope a", "true": float(e.slope), "fitted": float(a), "stderr": float(np.sqrt(cov[0, 0]))},
        {"parameter": "intercept b", "true": float(e.intercept), "fitted": float(b),
         "stderr": float(np.sqrt(cov[1, 1]))},
    ], [f"{n} points, x uniform on [{lo:g}, {hi:g}], Gaussian noise s.d. {noise:g}"], digits=4)
