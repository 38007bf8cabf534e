"""llm_efficiency_bench.core.ratios: paired rounds alternate the sides, and per-round ratios cancel the machine's load."""

from __future__ import annotations

import pytest

from llm_efficiency_bench.core import ratios
from llm_efficiency_bench.core.ratios import paired_rounds, per_round_ratio, spread


class _Clock:
    """A fake perf_counter that the timed functions advance: cost x the load of the current round."""

    def __init__(self):
        self.now, self.load = 0.0, 1.0

    def __call__(self) -> float:
        return self.now

    def work(self, cost_s: float) -> None:
        self.now += cost_s * self.load


def test_paired_rounds_alternate_order_and_average_calls(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(ratios.time, "perf_counter", clock)
    order: list[str] = []

    def slow():
        order.append("slow")
        clock.work(0.002)

    def fast():
        order.append("fast")
        clock.work(0.001)

    t = paired_rounds({"slow": slow, "fast": fast}, rounds=3, warmup=1, calls=2)
    assert order[:4] == ["slow", "slow", "fast", "fast"]          # warm-up round: slow first
    assert order[4:8] == ["fast", "fast", "slow", "slow"]          # the next round in reverse order
    assert len(order) == 16 and len(t["slow"]) == len(t["fast"]) == 3  # warm-up rounds are not kept
    assert t["slow"] == pytest.approx([2.0] * 3) and t["fast"] == pytest.approx([1.0] * 3)  # ms per call


def test_paired_rounds_exact_ratio_under_round_load(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(ratios.time, "perf_counter", clock)
    loads = iter([1.0, 3.0, 1.0, 5.0, 2.0, 1.0])

    def a():
        clock.work(0.005)

    def b():
        clock.work(0.001)

    def next_round():  # a third side that only changes the load for the next round
        clock.load = next(loads, 1.0)

    t = paired_rounds({"a": a, "b": b, "load": next_round}, rounds=5, warmup=1)
    ratio = spread(per_round_ratio(t["a"], t["b"]))
    assert ratio.median == pytest.approx(5.0) and ratio.min == pytest.approx(5.0)  # load cancels per round
    assert max(t["a"]) / min(t["a"]) > 2  # while the raw times moved with the load


def test_spread_and_bad_input():
    s = spread([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.median, s.min, s.max, s.n) == (3.0, 1.0, 5.0, 5)
    assert s.p25 < s.median < s.p75 and s.iqr == s.p75 - s.p25
    assert spread([2.0]).to_dict() == {"median": 2.0, "min": 2.0, "max": 2.0, "p25": 2.0, "p75": 2.0, "n": 1}
    with pytest.raises(ValueError, match="no ratios"):
        spread([])
    with pytest.raises(ValueError, match="positive"):
        spread([1.0, float("nan")])
    with pytest.raises(ValueError, match="same rounds"):
        per_round_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="rounds >= 1"):
        paired_rounds({"a": lambda: None}, rounds=0)
