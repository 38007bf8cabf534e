"""Uncertainty of the StreamingLLM comparisons: a paired PPL ratio and a trend against stream position.

Table 1's "streaming matches recompute" is a ratio of two perplexities measured on the *same* sampled
positions, and Fig. 5's "flat over 4M tokens" is a trend of per-book ratios against stream position. Both
need a standard error to be decided, not only a point value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class PairedRatio:
    """exp(mean(a) - mean(b)) over paired NLLs, i.e. PPL_a / PPL_b on the same positions."""

    value: float
    stderr_delta: float  # delta method, with the finite-population correction
    stderr_bootstrap: float  # paired bootstrap over positions (same correction), a cross-check
    n: int
    population: int


def paired_ppl_ratio(nll_a: torch.Tensor, nll_b: torch.Tensor, population: int | None = None,
                     n_boot: int = 2000, seed: int = 0) -> PairedRatio:
    """PPL ratio of two methods scored on the same positions, with two standard errors.

    The ratio is r = exp(mean d) with d = nll_a - nll_b per position (a ratio of paired geometric means of
    the per-token likelihoods). Delta method: se(r) = r * sd(d) / sqrt(n), because d's pairing removes
    the (large) between-position variance of the NLL itself. The positions are a simple random sample
    without replacement of `population` positions, so both errors carry the finite-population correction
    sqrt(1 - n/N): sampling every position gives the exact ratio with error 0.

    Args:
        nll_a, nll_b: (n,) NLLs at the same positions.
        population: how many positions the sample was drawn from (None: treat as infinite).
        n_boot: bootstrap resamples of the n pairs.
    """
    d = (nll_a.double() - nll_b.double()).flatten()  # (n,)
    n = d.numel()
    if n == 0:
        raise ValueError("no paired positions")
    N = population if population is not None else n
    fpc = math.sqrt(max(0.0, 1.0 - n / N)) if population is not None else 1.0
    r = math.exp(float(d.mean()))
    if n < 2:
        return PairedRatio(r, float("nan"), float("nan"), n, N)
    se_delta = r * float(d.std()) / math.sqrt(n) * fpc
    if fpc == 0.0:  # every position scored: the ratio is exact, nothing to resample
        return PairedRatio(r, 0.0, 0.0, n, N)
    g = torch.Generator().manual_seed(seed)
    boot = torch.cat([torch.exp(d[torch.randint(0, n, (min(100, n_boot - s), n), generator=g)].mean(1))
                      for s in range(0, n_boot, 100)])  # (n_boot,), 100 resamples of the n pairs at a time
    se_boot = float(boot.std()) * fpc
    return PairedRatio(r, se_delta, se_boot, n, N)


@dataclass
class Trend:
    """OLS fit y = a + b x with the slope's standard error."""

    slope: float
    stderr: float
    intercept: float
    n: int

    @property
    def z(self) -> float:
        """Slope in standard errors (|z| < 2: indistinguishable from zero at ~95%)."""
        if self.stderr == 0:
            return 0.0 if self.slope == 0 else math.copysign(math.inf, self.slope)
        return self.slope / self.stderr if math.isfinite(self.stderr) else float("nan")


def ols_trend(x: list[float], y: list[float]) -> Trend:
    """Ordinary least squares slope of y on x, se(b) = sqrt(SSR / (n-2) / Sxx) (needs n >= 3)."""
    n = len(x)
    if n != len(y) or n < 2:
        raise ValueError(f"need at least 2 paired points, got {n}")
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    xm, ym = xt.mean(), yt.mean()
    sxx = float(((xt - xm) ** 2).sum())
    if sxx == 0:
        raise ValueError("all x are equal: no slope")
    b = float(((xt - xm) * (yt - ym)).sum()) / sxx
    a = float(ym) - b * float(xm)
    if n < 3:
        return Trend(b, float("nan"), a, n)
    ssr = float(((yt - (a + b * xt)) ** 2).sum())
    return Trend(b, math.sqrt(ssr / (n - 2) / sxx), a, n)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% by default); (nan, nan) when n = 0.

    Used for accuracies from tens of questions, where the normal (Wald) interval is too narrow near 0 and 1.
    """
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def newcombe_diff(k1: int, n1: int, k2: int, n2: int, z: float = 1.96) -> tuple[float, float, float]:
    """p1 - p2 of two independent proportions with Newcombe's hybrid score interval (from the two Wilson
    intervals): (difference, low, high)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def paired_diff(a: list[int], b: list[int], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) of paired 0/1 outcomes (the same questions) with a 95% percentile bootstrap interval
    over questions: (difference, low, high). Pairing removes the between-question variance."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need equally many paired outcomes, at least one (got {len(a)} and {len(b)})")
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)  # (n,)
    g = torch.Generator().manual_seed(seed)
    boot = d[torch.randint(0, d.numel(), (n_boot, d.numel()), generator=g)].mean(1)  # (n_boot,)
    lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(d.mean()), lo, hi
