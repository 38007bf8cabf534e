"""AdaptiveStep settings: types and ranges, checked before any run (llm_efficiency_bench/core/validate.py)."""

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
    "scale.val_questions": nonneg_int(), "scale.val_samples": nonneg_int(hi=1 << 16),
    "scale.select_prm_questions": pos_int(), "select.more_questions": pos_int(),
    "tvd.threshold": Num(float, 0, 1, lo_open=True, hi_open=True),  # a probability threshold (§3.4)
    "tvd.top_k": pos_int(hi=1 << 20),
    "pipeline.rerun": ListOf(Text(), min_len=0),
    "pipeline.progress": Flag(),
    "scale.greedy_eval_questions": pos_int(), "scale.prm_questions": pos_int(), "scale.prm_samples": pos_int(hi=1 << 16),
    "scale.test_questions": pos_int(), "scale.test_samples": pos_int(hi=1 << 16), "scale.rollouts": pos_int(hi=1 << 16),
    "scale.max_new": pos_int(hi=1 << 16), "scale.batch": pos_int(hi=1 << 20), "scale.tvd_questions": pos_int(),
    "scale.bon_n": ListOf(pos_int(hi=1 << 16), unique=True), "scale.bon_seeds": pos_int(hi=1000),
    "released.pool": pos_int(hi=1 << 16), "released.batch": pos_int(hi=65536),
    "released.max_len": pos_int(null=True),
}

class PrmVariants:
    """`select.variants`: name -> overrides of the `prm` block (each value checked by that `prm` setting's type),
    and optionally `data: {prm_questions, prm_samples}` (checked like those `scale` sizes)."""

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
                msg = SPEC[f"scale.{k}"].check(val)
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

EXPERIMENTS = {
    "bon": {"experiment.n": ListOf(pos_int(hi=1 << 16), unique=True), "experiment.seeds": pos_int(hi=1000)},
    "bon_released": {"experiment.n": ListOf(pos_int(hi=1 << 16), unique=True), "experiment.seeds": pos_int(hi=1000)},
    "cost": {"experiment.splits": ListOf(SPLITS, unique=True)},
    "tvd": {"experiment.prm": SPLITS},
    "greedy": {"experiment.batch": pos_int(hi=65536)},
}

RULES = [
    Rule(("experiment.n", "scale.test_samples", "experiment.name"), lambda ns, pool, e: e != "bon" or max(ns) <= pool,
         "Best-of-N sizes {0} exceed the pool of {1} candidates per question (scale.test_samples)", "experiment.n"),
    Rule(("experiment.n", "released.pool", "released.candidates"), lambda ns, pool, c: c is None or max(ns) <= pool,
         "Best-of-N sizes {0} exceed the {1} released candidates kept per question (released.pool)", "experiment.n"),
    Rule(("task.difficulty.min_ops", "task.difficulty.max_ops"), lambda lo, hi: lo <= hi,
         "min_ops {0} must be at most max_ops {1}", "task.difficulty.min_ops"),
]
