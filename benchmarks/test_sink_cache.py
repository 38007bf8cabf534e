"""One decoding step through SinkCache vs a plain DynamicCache of the same length (goal <= 1.15x).

The ratio (`ratio`, median of paired rounds of STEPS steps per side, `llm_efficiency_bench.core.ratios.paired_rounds`) is
recorded in extra_info and reported against its goal by `reproduce.bench_compare` (make bench), not
asserted: a goal is a statement about an idle machine.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from llm_efficiency_bench.core.ratios import paired_rounds, per_round_ratio, spread
from llm_efficiency_bench.streaming_llm.rope import rope_of
from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache, cache_kwargs

pytestmark = pytest.mark.benchmark
CACHE, STEPS, PEDANTIC = 1024, 12, 20


@torch.no_grad()
def test_sink_cache_step_overhead(benchmark, smollm2, rounds):
    model = smollm2.model
    n_steps = STEPS * (rounds + 1) + PEDANTIC  # warm-up round, timed rounds, pedantic calls
    ids = torch.randint(0, 40000, (1, CACHE + n_steps))
    sink = SinkCache(4, CACHE - 4, rope_of(model))
    model(ids[:, :CACHE], position_ids=sink.position_ids(CACHE), use_cache=True, **cache_kwargs(model, sink))
    step = iter(range(CACHE, CACHE + n_steps))

    def sink_step():  # steady state: every step evicts one token and re-rotates the sinks
        t = next(step)
        model(ids[:, t:t + 1], position_ids=sink.position_ids(1), use_cache=True, **cache_kwargs(model, sink))

    dyn = DynamicCache()
    model(ids[:, :CACHE], use_cache=True, **cache_kwargs(model, dyn))

    def dyn_step():  # same attended length: crop back to CACHE keys after each step
        model(ids[:, :1], use_cache=True, **cache_kwargs(model, dyn))
        dyn.crop(-1)  # transformers 5: remove the token just added

    t = paired_rounds({"dynamic": dyn_step, "sink": sink_step}, rounds=rounds, warmup=1, calls=STEPS)
    ratios = per_round_ratio(t["sink"], t["dynamic"])
    s = spread(ratios)
    sink_ms, dyn_ms = spread(t["sink"]).median, spread(t["dynamic"]).median
    benchmark.extra_info.update({"sink_ms": sink_ms, "dynamic_ms": dyn_ms, "ratio": s.median,
                                 "ratio_rounds": ratios, "rounds": rounds, "steps_per_round": STEPS,
                                 "threads": torch.get_num_threads(),
                                 "about": {"ratio": "ms per decoding step through SinkCache over a DynamicCache "
                                                    f"of the same {CACHE} keys (fp32)"}})
    benchmark.pedantic(sink_step, rounds=PEDANTIC, iterations=1)
    print(f"\nsink {sink_ms:.2f} ms, dynamic {dyn_ms:.2f} ms, ratio {s.median:.3f} "
          f"({s.min:.3f}-{s.max:.3f} over {rounds} rounds of {STEPS} steps)")
