"""One decoding step through SinkCache vs a plain DynamicCache of the same length (bound: <= 1.15x).

The ratio is recorded in extra_info (`ratio`) and judged by `reproduce.bench_compare --ratio` (make bench),
not asserted: a load-dependent threshold must not fail the benchmark.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from bench.core.timing import time_interleaved
from bench.streaming_llm.rope import rope_of
from bench.streaming_llm.sink_cache import SinkCache, cache_kwargs

pytestmark = pytest.mark.benchmark
CACHE = 1024


@torch.no_grad()
def test_sink_cache_step_overhead(benchmark, smollm2):
    model = smollm2.model
    ids = torch.randint(0, 40000, (1, CACHE + 400))
    sink = SinkCache(4, CACHE - 4, rope_of(model))
    model(ids[:, :CACHE], position_ids=sink.position_ids(CACHE), use_cache=True, **cache_kwargs(model, sink))
    step = iter(range(CACHE, CACHE + 400))  # 5 + 60 timed + 20 pedantic steps < 400

    def sink_step():  # steady state: every step evicts one token and re-rotates the sinks
        t = next(step)
        model(ids[:, t:t + 1], position_ids=sink.position_ids(1), use_cache=True, **cache_kwargs(model, sink))

    dyn = DynamicCache()
    model(ids[:, :CACHE], use_cache=True, **cache_kwargs(model, dyn))

    def dyn_step():  # same attended length: crop back to CACHE keys after each step
        model(ids[:, :1], use_cache=True, **cache_kwargs(model, dyn))
        dyn.crop(-1)  # transformers 5: remove the token just added

    # interleaved (dyn, sink, dyn, sink, ...): both see the same machine state, so the ratio is stable
    t = time_interleaved({"dynamic": dyn_step, "sink": sink_step}, repeats=60, warmup=5)
    t_dyn, t_sink = t["dynamic"], t["sink"]
    ratio = t_sink.median_ms / t_dyn.median_ms
    benchmark.extra_info.update({"sink_ms": t_sink.median_ms, "dynamic_ms": t_dyn.median_ms, "ratio": ratio})
    benchmark.pedantic(sink_step, rounds=20, iterations=1)
    print(f"\nsink {t_sink.median_ms:.2f} ms, dynamic {t_dyn.median_ms:.2f} ms, ratio {ratio:.3f}")
