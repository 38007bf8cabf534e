"""Fourier-VLM settings: types and ranges, checked before any run (llm_efficiency_bench/core/validate.py)."""

from __future__ import annotations

from llm_efficiency_bench.core.validate import Choice, Flag, ListOf, MapOf, Rule, Text, nonneg_int, pos_float, pos_int

SPEC = {
    "fourier.method": Choice(("dct", "dct_dense", "avgpool", "drop", "none")),
    "fourier.base_side": pos_int(hi=1024),
    "fourier.budgets": ListOf(pos_int(hi=1024), unique=True),  # kept sides k (k*k tokens), Sec. 3
    "fourier.rescale": Flag(),
}

# Generated tokens per timed generation: the paper times 128; past this bound a CPU run takes hours
# (scale.new_tokens=1e8 ran 505 s before stopping on the context), so a larger value is a typo.
MAX_NEW_TOKENS = 4096

EXPERIMENTS = {
    "flops": {"experiment.text_tokens": ListOf(nonneg_int(hi=1 << 20), unique=True),
              "experiment.decode_tokens": nonneg_int(hi=1 << 20),
              "experiment.crosscheck_tokens": ListOf(pos_int(hi=1 << 20), min_len=0),
              "experiment.crosscheck_text_tokens": nonneg_int(hi=1 << 20),
              "experiment.paper_convention": Text(),
              "experiment.third_party_tflops": MapOf(pos_float(hi=1e6))},  # image tokens -> TFLOPs
    "speed": {"experiment.new_tokens": pos_int(hi=MAX_NEW_TOKENS), "experiment.text_tokens": nonneg_int(hi=1 << 20),
              "experiment.repeats": pos_int(hi=1000), "experiment.warmup": nonneg_int(hi=100),
              "experiment.batch": pos_int(hi=256), "experiment.dct_grids": ListOf(pos_int(hi=4096), min_len=0)},
    "lowpass": {"experiment.image": Text(), "experiment.image_side": pos_int(hi=8192)},
}

RULES = [
    Rule(("fourier.budgets", "fourier.base_side"), lambda ks, side: max(ks) <= side,
         "budgets {0} must be at most the {1}x{1} patch grid", "fourier.budgets"),
    # The uncompressed prompt (side^2 image tokens + text) and the generated tokens must fit the LM's context.
    Rule(("fourier.base_side", "experiment.text_tokens", "experiment.new_tokens",
          "model.arch.text.max_position_embeddings"),
         lambda side, t, g, ctx: 1 + side * side + t + g <= ctx,
         "1 + {0}^2 image + {1} text + {2} new tokens exceed the model's {3} positions", "experiment.new_tokens"),
]
