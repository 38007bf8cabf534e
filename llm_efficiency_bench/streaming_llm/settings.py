"""StreamingLLM's paper-wide settings (`data.*`, `eval.*`): types and ranges, checked before any run
(`core/validate.py`). Each experiment's own settings are declared beside its function (`@experiment`); the
ranges and rules several of them share are here."""

from __future__ import annotations

from llm_efficiency_bench.core.validate import Choice, Num, Rule, Text, pos_int

CACHE = pos_int(hi=1 << 20)  # S + L tokens; 1M is far past any model's context here

SPEC = {
    "data.kind": Choice(("text_dir", "hf_dataset")),
    "data.subdir": Text(),
    "data.split": Text(),
    "eval.chunk": pos_int(hi=65536),
    "eval.checkpoint_every_s": Num(float, 0),
    "eval.recompute_batch": pos_int(hi=4096),
}

# An S + R cache needs room for recent tokens next to its S sinks (Sec. 3.2).
SINKS_FIT_CACHE = Rule(("n_sink", "cache"), lambda s, c: s < c,
                       "{0} sink tokens in a cache of {1} leave no room for recent tokens", "n_sink")
SINKS_FIT_CACHE_SIZES = Rule(("n_sink", "cache_sizes"), lambda s, cs: s < min(cs),
                             "every cache size ({1}) must exceed the {0} sink tokens", "cache_sizes")
SINK_COUNTS_FIT_CACHE = Rule(("sink_counts", "cache"), lambda ss, c: max(ss) < c,
                             "sink counts {0} must each be below the cache size {1}", "sink_counts")
