"""Timing helpers: interleaved timing alternates the functions and summarises each one."""

from __future__ import annotations

import time

from llm_efficiency_bench.core.timing import summarize, time_interleaved


def test_time_interleaved_alternates_and_summarises():
    calls: list[str] = []

    def fast():
        calls.append("a")
        time.sleep(0.001)

    def slow():
        calls.append("b")
        time.sleep(0.006)

    t = time_interleaved({"a": fast, "b": slow}, repeats=5, warmup=1)
    assert calls == ["a", "b"] * 6                       # warm-up round, then strictly alternating
    assert t["a"].n == t["b"].n == 5
    assert t["b"].median_ms > t["a"].median_ms + 2       # 6 ms vs 1 ms sleeps, with slack for a busy CI


def test_summarize_median_and_iqr():
    t = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert t.median_ms == 3.0 and t.n == 5
    assert t.p25_ms < t.median_ms < t.p75_ms
