"""Speed ratios measured in paired rounds: the median of per-round ratios, with their spread.

A ratio of two medians taken over one run still mixes moments of different machine load. Here each round
times every side once, back to back, and yields one ratio (A's time over B's in that round); the load of
a round is shared by both sides, so it cancels in the ratio. The order of the sides alternates from round
to round (A B, B A, ...), so neither side always runs right after the other (warm caches, frequency).
The claim is the median of the per-round ratios; min-max and the interquartile range say how much it moved.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass
class Spread:
    """Summary of per-round ratios: median, extremes, quartiles and how many rounds."""

    median: float
    min: float
    max: float
    p25: float
    p75: float
    n: int

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spread(values: list[float]) -> Spread:
    """Median, min, max and quartiles of `values` (quartiles = extremes below four values).

    Raises:
        ValueError: `values` is empty or holds a non-positive or non-finite ratio.
    """
    if not values:
        raise ValueError("no ratios to summarise")
    if any(not (v > 0 and v < float("inf")) for v in values):
        raise ValueError(f"ratios must be positive and finite, got {values}")
    s = sorted(float(v) for v in values)
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        p25, p75 = q[0], q[2]
    else:
        p25, p75 = s[0], s[-1]
    return Spread(statistics.median(s), s[0], s[-1], p25, p75, len(s))


def paired_rounds(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                  calls: int = 1) -> dict[str, list[float]]:
    """Milliseconds per call of every function in every round, the sides taking turns within each round.

    Args:
        fns: name -> function; each is called `calls` times in a row per round (its mean is the sample).
        rounds: timed rounds (one sample per function each).
        warmup: untimed rounds first (kernels, allocator, caches).
        calls: calls per function per round, for functions too short to time one by one.

    Raises:
        ValueError: fewer than one round or call.
    """
    if rounds < 1 or calls < 1:
        raise ValueError(f"paired_rounds needs rounds >= 1 and calls >= 1 (got {rounds}, {calls})")
    names = list(fns)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(warmup + rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[k]()
            ms = (time.perf_counter() - t0) * 1e3 / calls
            if r >= warmup:
                samples[k].append(ms)
    return samples


def per_round_ratio(num: list[float], den: list[float]) -> list[float]:
    """`num[i] / den[i]` for each round (e.g. ms per token of the slow path over the fast one).

    Raises:
        ValueError: the two lists are not from the same rounds (lengths differ).
    """
    if len(num) != len(den):
        raise ValueError(f"per-round ratio of {len(num)} and {len(den)} samples: not the same rounds")
    return [a / b for a, b in zip(num, den)]
