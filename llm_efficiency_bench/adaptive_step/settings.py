"""AdaptiveStep's paper-wide settings: types, ranges and rules, checked before any run (`core/validate.py`).

The pipeline's sizes are paper-wide (several experiments read the same cached stages), set per profile and
grouped by the stage they size: `policy.eval_questions`, `samples.*` (questions x solutions per question
split), `labels.rollouts`, `pipeline.max_new` / `pipeline.batch` (every stage) and `select.more_questions`;
`stage_settings.py` is the one place that reads them. Each experiment's own settings (Best-of-N sizes, TVD
questions, lm-eval policies) are declared beside its function (`@experiment`).
"""

from __future__ import annotations

from typing import Any

from llm_efficiency_bench.core.validate import Choice, Flag, ListOf, Num, Rule, Text, nonneg_int, pos_float, pos_int

SPLITS = Choice(("confidence", "newline", "random"))  # §3.1 and Table 3's control

SPEC = {
    "task.name": Choice(("synthetic", "gsm8k", "math500", "humaneval", "mbpp")),
    "task.seed": nonneg_int(),
    "task.code_timeout": pos_float(hi=600),
    "task.difficulty.min_ops": pos_int(hi=100), "task.difficulty.max_ops": pos_int(hi=100),
    "task.difficulty.max_start": pos_int(hi=10**6), "task.difficulty.max_add": pos_int(hi=10**6),
    "task.difficulty.max_mul": pos_int(hi=1000),
    "method.percentile": Num(float, 0, 100, lo_open=True, hi_open=True),  # tau = this percentile (§3.1)
    "method.temperature": pos_float(hi=100),
    "method.splits": ListOf(SPLITS, unique=True),
    "method.aggregations": ListOf(Choice(("min", "mean", "last")), unique=True),
    "prm.lr": pos_float(hi=10), "prm.loss": Choice(("vocab", "pair")), "prm.epochs": pos_int(hi=1000),
    "prm.batch": pos_int(hi=65536), "prm.seed": nonneg_int(),
    "prm.labels": Choice(("hard", "soft")), "prm.early_stop": Flag(),
    "select.enabled": Flag(), "select.split": SPLITS, "select.top1_n": ListOf(pos_int(hi=1 << 16), unique=True),
    "select.more_questions": pos_int(),  # PRM-data questions of the `more_data*` variants (the data lever)
    "tvd.threshold": Num(float, 0, 1, lo_open=True, hi_open=True),  # a probability threshold (§3.4)
    "tvd.top_k": pos_int(hi=1 << 20),
    "pipeline.rerun": ListOf(Text(), min_len=0),
    "pipeline.progress": Flag(),
    # the pipeline's sizes (the `policy`, `samples_<split>` and `labels_<split>` stages; every stage)
    "policy.eval_questions": pos_int(),  # test questions of the policy's greedy accuracy
    "samples.prm_questions": pos_int(), "samples.prm_samples": pos_int(hi=1 << 16),
    "samples.test_questions": pos_int(), "samples.test_samples": pos_int(hi=1 << 16),
    "samples.val_questions": nonneg_int(), "samples.val_samples": nonneg_int(hi=1 << 16),  # 0: no validation
    "labels.rollouts": pos_int(hi=1 << 16),  # K Monte-Carlo rollouts per step prefix (§3.2)
    "pipeline.max_new": pos_int(hi=1 << 16), "pipeline.batch": pos_int(hi=1 << 20),
    "released.pool": pos_int(hi=1 << 16), "released.batch": pos_int(hi=65536),
    "released.max_len": pos_int(null=True),
}

class PrmVariants:
    """`select.variants`: name -> overrides of the `prm` block (each value checked by that `prm` setting's type),
    and optionally `data: {prm_questions, prm_samples}` (checked like those `samples` sizes)."""

    def check(self, v: Any) -> str | None:
        if not isinstance(v, dict) or not v:
            return "must be a non-empty map of variant name -> overrides of `prm`"
        for name, over in v.items():
            over = dict(over or {})
            data = over.pop("data", None) or {}
            if not isinstance(data, dict):
                return f"variant {name!r}: `data` must map prm_questions / prm_samples to sizes"
            for k, val in data.items():
                if k not in ("prm_questions", "prm_samples"):
                    return f"variant {name!r}: data.{k} is not a PRM-data size (prm_questions, prm_samples)"
                msg = SPEC[f"samples.{k}"].check(val)
                if msg:
                    return f"variant {name!r}: data.{k} {msg}"
            for k, val in over.items():
                typ = SPEC.get(f"prm.{k}")
                if typ is None:
                    return f"variant {name!r}: `{k}` is not a `prm` setting"
                msg = typ.check(val)
                if msg:
                    return f"variant {name!r}: {k} {msg}"
        return None


SPEC["select.variants"] = PrmVariants()

RULES = [
    Rule(("task.difficulty.min_ops", "task.difficulty.max_ops"), lambda lo, hi: lo <= hi,
         "min_ops {0} must be at most max_ops {1}", "task.difficulty.min_ops"),
]
