"""Fourier-VLM's paper-wide settings (`fourier.*`): types, ranges and rules, checked before any run
(`core/validate.py`). Each experiment's own settings are declared beside its function (`@experiment`)."""

from __future__ import annotations

from llm_efficiency_bench.core.validate import Choice, Flag, ListOf, Rule, pos_int

SPEC = {
    "fourier.method": Choice(("dct", "dct_dense", "avgpool", "drop", "none")),
    "fourier.base_side": pos_int(hi=1024),
    "fourier.budgets": ListOf(pos_int(hi=1024), unique=True),  # kept sides k (k*k tokens), Sec. 3
    "fourier.rescale": Flag(),
}

# Generated tokens per timed generation: the paper times 128; past this bound a CPU run takes hours
# (1e8 ran 505 s before stopping on the context), so a larger value is a typo.
MAX_NEW_TOKENS = 4096

RULES = [
    Rule(("fourier.budgets", "fourier.base_side"), lambda ks, side: max(ks) <= side,
         "budgets {0} must be at most the {1}x{1} patch grid", "fourier.budgets"),
    # The uncompressed prompt (side^2 image tokens + text) and the generated tokens must fit the LM's context.
    Rule(("fourier.base_side", "experiment.text_tokens", "experiment.new_tokens",
          "model.arch.text.max_position_embeddings"),
         lambda side, t, g, ctx: 1 + side * side + t + g <= ctx,
         "1 + {0}^2 image + {1} text + {2} new tokens exceed the model's {3} positions", "experiment.new_tokens"),
]
