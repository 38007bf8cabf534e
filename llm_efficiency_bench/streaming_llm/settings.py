"""StreamingLLM settings: types and ranges, checked before any run (llm_efficiency_bench/core/validate.py)."""

from __future__ import annotations

from llm_efficiency_bench.core.validate import Choice, Flag, ListOf, Num, Rule, Text, nonneg_int, pos_float, pos_int

CACHE = pos_int(hi=1 << 20)  # S + L tokens; 1M is far past any model's context here

SPEC = {
    "data.kind": Choice(("text_dir", "hf_dataset")),
    "data.subdir": Text(),
    "data.split": Text(),
    "eval.chunk": pos_int(hi=65536),
    "eval.checkpoint_every_s": Num(float, 0),
    "eval.recompute_batch": pos_int(hi=4096),
}

# What each experiment reads (configs/streaming_llm/experiment/<name>.yaml).
EXPERIMENTS = {
    "ppl_table1": {"experiment.max_tokens": pos_int(null=True), "experiment.cache": CACHE,
                   "experiment.n_sink": nonneg_int(), "experiment.newline_sinks": nonneg_int(),
                   # null: every position with a full window (exact, the paper profile)
                   "experiment.recompute_samples": pos_int(null=True), "experiment.allow_beyond_context": Flag(),
                   "experiment.dtype_check_tokens": nonneg_int(), "experiment.dtype_tolerance": pos_float(hi=1)},
    "ppl_sinks": {"experiment.max_tokens": pos_int(), "experiment.cache": CACHE,
                  "experiment.sink_counts": ListOf(nonneg_int(), unique=True)},
    "ppl_cache": {"experiment.max_tokens": pos_int(), "experiment.n_sink": nonneg_int(),
                  "experiment.cache_sizes": ListOf(CACHE, unique=True)},
    "ppl_4m": {"experiment.max_tokens": pos_int(), "experiment.cache": CACHE, "experiment.n_sink": nonneg_int(),
               "experiment.segment": pos_int(), "experiment.dtype_check_tokens": nonneg_int(),
               "experiment.dtype_tolerance": pos_float(hi=1),
               "experiment.max_book_tokens": pos_int(null=True),  # null: whole books (the paper)
               # Fig. 5 against the same text: T tokens per compared book; null books = every book
               "experiment.fresh_tokens": pos_int(), "experiment.fresh_books": Num(int, 3, 100_000, null=True)},
    "eval_speed": {"experiment.n_sink": nonneg_int(), "experiment.cache": CACHE, "experiment.tokens": pos_int(),
                   "experiment.chunk": pos_int(hi=65536), "experiment.sink_steps": pos_int(hi=100_000),
                   "experiment.project_tokens": pos_int()},
    "speed": {"experiment.cache_sizes": ListOf(CACHE, unique=True), "experiment.n_sink": nonneg_int(),
              "experiment.tokens": pos_int(hi=100_000), "experiment.warmup": nonneg_int(hi=1000)},
    "attention": {"experiment.books": pos_int(hi=1000), "experiment.sentences": pos_int(hi=100_000),
                  "experiment.sentence_tokens": pos_int(hi=4096), "experiment.late_position": pos_int(hi=1 << 20)},
    "sink_pretrain": {
        "experiment.variants": ListOf(Choice(("vanilla", "sink", "zero_sink")), unique=True),
        **{f"experiment.arch.{k}": pos_int(hi=65536) for k in ("hidden", "intermediate", "layers", "heads", "kv_heads")},
        "experiment.vocab": Num(int, 260, 1 << 20),  # byte-level BPE: 256 bytes + specials at least
        "experiment.max_chars": pos_int(), "experiment.holdout_books": pos_int(hi=1000),
        "experiment.train.steps": pos_int(), "experiment.train.batch": pos_int(hi=65536),
        "experiment.train.seq_len": Num(int, 2, 1 << 20), "experiment.train.lr": pos_float(hi=10),
        "experiment.train.warmup": nonneg_int(), "experiment.train.weight_decay": Num(float, 0, 10),
        "experiment.train.seed": nonneg_int(), "experiment.cache": CACHE,
        "experiment.sink_counts": ListOf(nonneg_int(), unique=True), "experiment.eval_tokens": pos_int(),
        "experiment.probe_windows": pos_int(hi=100_000), "experiment.probe_points": pos_int(hi=100_000)},
    "stream_qa": {"experiment.splits": ListOf(Choice(("arc_easy", "arc_challenge")), unique=True),
                  "experiment.part": Choice(("test", "dev")), "experiment.questions": pos_int(null=True),
                  "experiment.policies": ListOf(Choice(("one_shot", "dense", "window", "streaming")), unique=True),
                  "experiment.cache": CACHE, "experiment.n_sink": nonneg_int(),
                  "experiment.dense_max_tokens": pos_int(), "experiment.generate_every": nonneg_int(),
                  "experiment.max_new_tokens": pos_int(hi=4096), "experiment.chunk": pos_int(hi=65536)},
    "chat": {"experiment.conversation": Text(), "experiment.rounds": pos_int(null=True), "experiment.cache": CACHE,
             "experiment.n_sink": nonneg_int(), "experiment.max_new_tokens": pos_int(hi=100_000)},
    "stream_eval": {"experiment.seed": nonneg_int(), "experiment.dev_seed": nonneg_int(),
                    "experiment.lines": pos_int(hi=50_000), "experiment.dev_lines": pos_int(hi=50_000),
                    "experiment.distances": ListOf(pos_int(hi=50_000), unique=True),
                    "experiment.dev_distances": ListOf(pos_int(hi=50_000), unique=True),
                    "experiment.dev_one_shot_distances": ListOf(nonneg_int(hi=50_000), min_len=0, unique=True),
                    "experiment.query_every": pos_int(hi=50_000), "experiment.cache": CACHE,
                    "experiment.n_sink": nonneg_int(),
                    "experiment.policies": ListOf(Choice(("streaming", "window", "dense")), unique=True),
                    "experiment.dense_max_tokens": pos_int(), "experiment.max_new_tokens": pos_int(hi=4096),
                    "experiment.position_bins": pos_int(hi=1000)},
}

RULES = [
    Rule(("experiment.n_sink", "experiment.cache"), lambda s, c: s < c,
         "{0} sink tokens in a cache of {1} leave no room for recent tokens", "experiment.n_sink"),
    Rule(("experiment.n_sink", "experiment.cache_sizes"), lambda s, cs: s < min(cs),
         "every cache size ({1}) must exceed the {0} sink tokens", "experiment.cache_sizes"),
    Rule(("experiment.sink_counts", "experiment.cache"), lambda ss, c: max(ss) < c,
         "sink counts {0} must each be below the cache size {1}", "experiment.sink_counts"),
    Rule(("experiment.cache", "experiment.train.seq_len", "experiment.name"),
         lambda c, t, n: n != "sink_pretrain" or c <= t,
         "the streaming cache {0} must be at most the training context {1} (Sec. 3.3)", "experiment.cache"),
    Rule(("experiment.arch.hidden", "experiment.arch.heads"), lambda h, n: h % n == 0,
         "hidden size {0} must be a multiple of the {1} heads", "experiment.arch.heads"),
    Rule(("experiment.arch.heads", "experiment.arch.kv_heads"), lambda n, kv: n % kv == 0,
         "the {0} heads must be a multiple of the {1} key/value heads", "experiment.arch.kv_heads"),
    Rule(("experiment.seed", "experiment.dev_seed", "experiment.name"), lambda a, b, n: n != "stream_eval" or a != b,
         "the dev stream's seed must differ from the test stream's ({0})", "experiment.dev_seed"),
]
