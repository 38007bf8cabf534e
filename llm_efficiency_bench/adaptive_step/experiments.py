"""AdaptiveStep experiments on the miniature: `bon` (Best-of-N, Figs. 4-5 / Tables 2, 3, 6), `tvd` (Table 1),
`cost` (§4.4), `greedy` (lm-eval greedy accuracy, run by `greedy.greedy`). The released-PRM Best-of-N is
`released.bon_released`. Each is declared with its settings (`@experiment`); the pipeline's sizes are
paper-wide (`settings.py`, read by `stage_settings.py`).

Every experiment runs the cached pipeline (`llm_efficiency_bench.adaptive_step.pipeline`) up to what it needs, then
reports metrics named `bon_acc.<arm>.<N>`, `acc.greedy` / `acc.tvd` / `prm_calls`,
`rollouts.<split>` / `tokens.<split>` / `steps_per_solution.<split>` and the confidence/newline ratios.
Accuracies are in percent, like the paper's tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_efficiency_bench.adaptive_step import figures, pipeline, recipe_selection, stage_settings, steps
from llm_efficiency_bench.adaptive_step import greedy as lm_eval_greedy
from llm_efficiency_bench.adaptive_step.bon import BestOfNSettings, bon_sweep, groups_of, score_pick
from llm_efficiency_bench.adaptive_step.oracle import add_oracle
from llm_efficiency_bench.adaptive_step.settings import SPLITS
from llm_efficiency_bench.adaptive_step.tvd import run_tvd
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import ListOf, Rule, pos_int


def _runs_the_pipeline(name: str, hint: str) -> Rule:
    """The miniature's pipeline does not run on a profile that says so (`profile.pipeline: false`, the
    `paper` profile: 7B policies)."""
    return Rule(("/profile.pipeline",), lambda p: p is not False,
                f"`{name}` on the `paper` profile is not implemented: {hint}", "/profile")


_DECODING_LOOP = ("TVD and construction cost need the 7B policy in the suite's decoding loop (generation.py), "
                  "which builds its tensors on the CPU; use profile=smoke or profile=cpu for them")


def _policy_metrics(ctx: RunContext, data: pipeline.PipelineData) -> None:
    ctx.metric("policy.greedy_acc", 100 * data.policy.greedy_acc, "%", "none",
               note=f"greedy accuracy of the policy on {ctx.cfg.policy.eval_questions} test questions")
    ctx.metric("samples.test_acc", 100 * float(np.mean([r["correct"] for r in data.test.rows])), "%", "none",
               note="accuracy of one sampled test candidate (temperature sampling)")
    # provenance: the keys of the policy, samples and division this record was computed from
    ctx.record.extra["stage_keys"] = data.stage_keys()
    ctx.record.extra["tau"] = data.division.tau


BON_RULES = [
    _runs_the_pipeline("bon", "use experiment=bon_released (released PRMs scoring released candidates)"),
    Rule(("n", "/samples.test_samples"), lambda ns, pool: max(ns) <= pool,
         "Best-of-N sizes {0} exceed the pool of {1} candidates per question (samples.test_samples)", "n"),
]


@experiment(settings=BestOfNSettings, rules=BON_RULES, figures=figures.draw_bon)
def bon(ctx: RunContext) -> None:
    """Best-of-N with confidence-PRM, newline-PRM (and random-PRM), ORM, majority, random pick, pass@N.

    The PRM recipe shared by every learned arm is chosen on validation questions first
    (`recipe_selection.choose_recipe`); every verifier is then diagnosed on validation candidates
    (`verifiers_val` table) and only then run once on the test questions.
    """
    cfg = ctx.cfg
    data = pipeline.build_data(cfg, ctx.log)
    _policy_metrics(ctx, data)
    cfg, data, v, recipe = recipe_selection.chosen_setup(ctx, data)
    scores: dict[str, list[list[float]]] = {}
    val: dict[str, tuple[list[list[float]], str | None]] = {}  # arm -> (validation step scores, oracle split)
    fits: dict[str, float] = {}
    kind = str(recipe.get("labels", "hard"))
    for split in cfg.method.splits:
        validator = recipe_selection.auc_validator(cfg, data, v, split) if v else None
        prm, key = pipeline.train_split_prm(cfg, data, split, ctx.log, recipe, validator)
        scores[f"{split}_prm"] = pipeline.test_scores(cfg, data, prm, key, split, ctx.log)
        if v is not None:
            val[f"{split}_prm"] = (recipe_selection.val_scores(cfg, data, v, prm, key, split, ctx.log), split)
            fits[f"{split}_prm"] = recipe_selection.train_fit(
                cfg, data, prm, key, split, [lab[kind] for lab in data.labels[split].labels], ctx.log)
    first = list(cfg.method.splits)[0]
    validator = recipe_selection.auc_validator(cfg, data, v, first, orm=True) if v else None
    orm, okey = pipeline.train_orm(cfg, data, ctx.log, recipe, validator)
    scores["orm"] = pipeline.test_scores(cfg, data, orm, okey, first, ctx.log, orm=True)
    if v is not None:
        val["orm"] = (recipe_selection.val_scores(cfg, data, v, orm, okey, first, ctx.log, orm=True), None)
        fits["orm"] = recipe_selection.train_fit(cfg, data, orm, okey, first,
                                                 [lab["hard"] for lab in data.labels[first].labels], ctx.log, orm=True)
    # PRM-free reference verifier: the policy's own lowest token confidence in the candidate (§3.1's signal)
    min_conf = lambda rows: [[min(r["conf"]) if r["conf"] else 0.0] for r in rows]  # noqa: E731
    scores["min_confidence"] = min_conf(data.test.rows)
    if v is not None:
        val["min_confidence"] = (min_conf(v.rows), None)
    add_oracle(ctx, data, scores, recipe, v, val)  # synthetic task: the exact step checker as arm, annotator, labels
    if v is not None:
        _val_table(ctx, data, v, val, fits)

    test, pol = data.test, data.policy
    correct = [bool(r["correct"]) for r in test.rows]
    # math: the GSM8K number / MATH500 box; code: the normalised program (tasks.CodeTask.answer_key)
    answers = [pol.task.answer_key(pol.decode(r["ids"]), test.probs[r["q"]]) for r in test.rows]
    groups = groups_of([r["q"] for r in test.rows])

    pickers: dict[str, Any] = {}
    for name, sc in scores.items():
        aggs = ["min"] if name in ("orm", "oracle", "oracle_arith", "min_confidence") else list(cfg.method.aggregations)
        for agg in aggs:
            vals = [steps.aggregate(s, agg) for s in sc]
            arm = name if agg == "min" else f"{name}_{agg}"  # min is the paper's default aggregation
            pickers[arm] = score_pick(vals)
            if agg == "min":  # how well the verifier separates correct from wrong candidates
                w, n_q = steps.within_group_auc(vals, correct, groups)
                ctx.metric(f"prm_auc.{name}.within_question", w, "AUC", "higher",
                           note=f"mean over the {n_q} test questions with both correct and wrong candidates; "
                                "0.5 = chance; what Best-of-N depends on")
                ctx.metric(f"prm_auc.{name}.pooled", steps.auc(vals, correct), "AUC", "none",
                           note="all test candidates pooled: also rewards knowing which questions are easy")
    results, ns, seeds, rows, ci = bon_sweep(ctx, pickers, groups, correct, answers, "")
    ctx.table("bon", f"Best-of-N accuracy (%) on {cfg.task.name}, mean over {len(seeds)} seeds [bootstrap 95% CI]",
              rows, notes=[
        f"policy {cfg.model.name}, greedy {100 * pol.greedy_acc:.1f}%; {len(groups)} test questions, "
        f"pool of {cfg.samples.test_samples} candidates each; N drawn without replacement per seed",
        "interval: percentile bootstrap over test questions (per-question accuracy averaged over seeds)",
        "PRM arms aggregate step scores with min (paper default); `_mean` / `_last` are the other aggregations",
        f"PRM recipe (chosen on validation questions): {recipe}",
        f"tau = {data.division.tau:.4g} ({cfg.method.percentile}th percentile of pooled confidences)"])
    # The runner draws the figure from these CSVs (`figures.draw_bon`), the code the report uses.
    ctx.csv("bon_long", figures.bon_rows(results, seeds), columns=figures.BON_COLUMNS)
    ctx.csv("bon_ci", ci, columns=figures.CI_COLUMNS)


def _val_table(ctx: RunContext, data: pipeline.PipelineData, v: recipe_selection.ValData,
               val: dict[str, tuple[list[list[float]], str | None]], fits: dict[str, float]) -> None:
    """Every verifier on validation candidates: within vs pooled AUC, top-1 at N, score correlations, fit."""
    rows = []
    for arm, (sc, osplit) in val.items():
        rep = recipe_selection.verifier_report(ctx.cfg, data, v, sc, oracle_split=osplit)
        rows.append({"verifier": arm, "fit (%)": fits.get(arm, float("nan")), **rep})
        for k in ("within_auc", "pooled_auc"):
            ctx.metric(f"val.{arm}.{k}", rep[k], "AUC", "higher" if k == "within_auc" else "none",
                       note=f"{len(v.groups)} validation questions (split `val`)")
        for k in ("corr_magnitude", "corr_steps"):
            ctx.metric(f"val.{arm}.{k}", rep[k], "Spearman rho", "none",
                       note="within-question correlation of the min score with "
                            + ("log(1+|answer|)" if k == "corr_magnitude" else "the number of steps"))
    ctx.table("verifiers_val", "Verifiers on validation questions: within- vs between-question discrimination",
              rows, notes=[
        f"{len(v.groups)} validation questions x {ctx.cfg.samples.val_samples} candidates; min aggregation",
        "within_auc: mean per-question AUC (what Best-of-N uses); pooled_auc: all candidates pooled",
        "top1@N: Best-of-N accuracy (%) on validation questions; fit: agreement with own training labels; "
        "step_acc: agreement with the exact oracle step labels",
        "corr_*: mean within-question Spearman correlation of the score with log(1+|answer|), step count, length"],
        digits=3)


@dataclass
class TvdSettings:
    """Table 1's settings (`experiment.*`); the threshold and top-k are the method's (`tvd.*`)."""

    prm: str = setting("confidence", SPLITS, "the split whose PRM guides decoding (confidence | newline | random)")
    questions: int = setting(1319, pos_int(), "test questions decoded (the paper: GSM8K's 1319)")


@experiment(settings=TvdSettings, rules=[_runs_the_pipeline("tvd", _DECODING_LOOP)])
def tvd(ctx: RunContext) -> None:
    """Token-level value-guided decoding with the confidence-split PRM vs greedy (Table 1)."""
    cfg = ctx.cfg
    split = str(cfg.experiment.prm)
    sel = cfg.get("select") or {}
    data = pipeline.build_data(cfg, ctx.log, label_splits=sorted({split, str(sel.get("split", split))}))
    _policy_metrics(ctx, data)
    # `bon`'s choice of recipe (cached)
    cfg, data, v, recipe = recipe_selection.chosen_setup(ctx, data, write=False, label_splits=[split])
    validator = recipe_selection.auc_validator(cfg, data, v, split) if v else None
    prm, key = pipeline.train_split_prm(cfg, data, split, ctx.log, recipe, validator)
    inputs = stage_settings.tvd_inputs(cfg, data.policy.key, key, int(cfg.experiment.questions))
    out = run_tvd(inputs, data.policy, prm, stage_settings.run_options(cfg), ctx.log)
    rows = out["rows"]
    n = len(rows)
    g = 100 * float(np.mean([r["greedy"] for r in rows]))
    t = 100 * float(np.mean([r["tvd"] for r in rows]))
    calls = int(sum(r["calls"] for r in rows))
    se = lambda p: float(np.sqrt(p * (100 - p) / max(1, n)))  # noqa: E731  binomial stderr in %
    ctx.metric("acc.greedy", g, "%", "higher", note=f"{n} test questions", stderr=se(g))
    ctx.metric("acc.tvd", t, "%", "higher", note=f"{split}-PRM, threshold {cfg.tvd.threshold}, top-{cfg.tvd.top_k}",
               stderr=se(t))
    ctx.metric("prm_calls", calls, "candidates scored", "none", note="total over the test questions")
    ctx.metric("prm_calls_per_question", calls / max(1, n), "candidates", "none")
    ctx.metric("tvd.changed_fraction", 100 * float(np.mean([r["changed"] for r in rows])), "%", "none",
               note="questions whose TVD output differs from greedy")
    wins = sum(r["tvd"] and not r["greedy"] for r in rows)
    losses = sum(r["greedy"] and not r["tvd"] for r in rows)
    # paired comparison on the same questions: two-sided sign test on the discordant pairs
    from scipy.stats import binomtest

    p_sign = float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
    ctx.metric("tvd.fixes", wins, "questions", "higher", note="TVD right where greedy is wrong")
    ctx.metric("tvd.breaks", losses, "questions", "lower", note="TVD wrong where greedy is right")
    ctx.metric("tvd.sign_test_p", p_sign, "p-value", "none", note="two-sided sign test on fixes vs breaks")
    ctx.table("tvd", "Token-level value-guided decoding vs greedy", [
        {"decoding": "greedy", "accuracy (%)": g, "PRM calls": 0},
        {"decoding": f"TVD ({split}-PRM)", "accuracy (%)": t, "PRM calls": calls}],
        notes=[f"{n} questions; TVD fixes {wins}, breaks {losses} (sign test p = {p_sign:.3g})",
               f"PRM recipe (chosen on validation questions by `bon`): {recipe}",
               f"threshold {cfg.tvd.threshold} on the top-1 probability, top-{cfg.tvd.top_k} candidates"])


@dataclass
class CostSettings:
    """§4.4's settings (`experiment.*`)."""

    splits: list[str] = setting(["confidence", "newline", "random"], ListOf(SPLITS, unique=True),
                                "split rules whose PRM data is labelled and costed (random: Table 3's control)")


@experiment(settings=CostSettings, rules=[_runs_the_pipeline("cost", _DECODING_LOOP)], figures=figures.draw_cost)
def cost(ctx: RunContext) -> None:
    """Construction cost per split (rollouts, tokens, wall time) and split-point token types."""
    cfg = ctx.cfg
    splits = list(cfg.experiment.splits)
    data = pipeline.build_data(cfg, ctx.log, label_splits=splits)
    _policy_metrics(ctx, data)
    ctx.metric("tau", data.division.tau, "probability", "none", note=f"{cfg.method.percentile}th percentile")
    rows = []
    for sp in splits:
        c: steps.Cost = data.labels[sp].cost
        ctx.metric(f"rollouts.{sp}", c.rollouts, "rollouts", "lower", note=f"K = {cfg.labels.rollouts} per step prefix")
        ctx.metric(f"tokens.{sp}", c.tokens, "tokens", "lower", note="tokens generated by the rollouts")
        ctx.metric(f"steps_per_solution.{sp}", c.steps_per_solution, "markers", "lower",
                   note="markers per solution, closing marker included")
        ctx.metric(f"seconds.{sp}", c.seconds, "s", "lower", note="wall time of the rollouts")
        pos = float(np.mean([v for lab in data.labels[sp].labels for v in lab["hard"]]))
        rows.append({"split": sp, "solutions": c.solutions, "markers": c.markers,
                     "steps/solution": c.steps_per_solution, "rollouts": c.rollouts, "tokens": c.tokens,
                     "seconds": c.seconds, "positive labels": pos})
    if "confidence" in splits and "newline" in splits:
        cc, cn = data.labels["confidence"].cost, data.labels["newline"].cost
        for what, a, z in (("rollouts", cc.rollouts, cn.rollouts), ("tokens", cc.tokens, cn.tokens),
                           ("markers", cc.markers, cn.markers), ("seconds", cc.seconds, cn.seconds)):
            ctx.metric(f"ratio.{what}.confidence_over_newline", a / z if z else float("nan"), "ratio", "lower",
                       note="paper: 0.74 markers on its shipped GSM8K examples; 'over 30% lower' cost")
    ctx.table("cost", "PRM-data construction cost per split", rows, notes=[
        f"{len(data.prm.rows)} solutions ({cfg.samples.prm_questions} questions x {cfg.samples.prm_samples} samples); "
        f"K = {cfg.labels.rollouts} rollouts per non-closing marker; tau = {data.division.tau:.4g}"])
    ta, ts = data.division.types_all, data.division.types_split
    na, ns = sum(ta.values()), max(1, sum(ts.values()))
    trows = []
    for k in sorted(set(ta) | set(ts), key=lambda k: (-ts.get(k, 0), k)):  # ties by name: a stable table
        sa, ss = ta.get(k, 0) / na, ts.get(k, 0) / ns
        trows.append({"token type": k, "share of all tokens": 100 * sa, "share of split points": 100 * ss,
                      "over-representation": ss / sa if sa else float("nan")})
        ctx.metric(f"split_share.{k}", 100 * ss, "%", "none", note=f"all tokens: {100 * sa:.1f}%")
    ctx.table("split_token_types", "Token types at confidence split points vs all sampled tokens", trows)


class Policies:
    """`experiment.policies` of `greedy`: a non-empty list of {name, tasks, source, model_config, limit}."""

    def check(self, v: Any) -> str | None:
        if not isinstance(v, list) or not v:
            return f"must list at least one policy (got {v!r})"
        for p in v:
            if not isinstance(p, dict) or not p.get("name") or not p.get("tasks"):
                return f"entry {p!r}: needs a `name` and a list of lm-eval `tasks`"
            source = p.get("source", "model_config")
            if source not in ("pipeline", "model_config"):
                return f"policy {p['name']}: unknown source {source!r} (pipeline | model_config)"
            if source == "model_config" and not p.get("model_config"):
                return f"policy {p['name']}: source model_config needs `model_config` (a configs/model/ name)"
            if p.get("limit") is not None and (isinstance(p["limit"], bool) or not isinstance(p["limit"], int)
                                               or p["limit"] < 1):
                return f"policy {p['name']}: limit must be a positive whole number or null (got {p['limit']!r})"
        return None


# The paper's policy on GSM8K and MATH500, every question (lm-eval task YAMLs in lm_eval_tasks/).
PAPER_POLICIES = [{"name": "metamath_mistral_7b", "source": "model_config", "model_config": "metamath_mistral_7b",
                   "tasks": ["bench_gsm8k_numeric", "bench_math500"], "limit": None}]


@dataclass
class GreedySettings:
    """lm-eval greedy accuracy's settings (`experiment.*`)."""

    policies: list[dict[str, Any]] = setting(PAPER_POLICIES, Policies(),
                                             "policies evaluated: source `pipeline` (the policy stage's own model, "
                                             "on its test questions) or `model_config` (a configs/model/ entry); "
                                             "lm-eval tasks; question limit (null: all)")
    batch: int = setting(16, pos_int(hi=65536), "lm-eval batch size")


@experiment(settings=GreedySettings)
def greedy(ctx: RunContext) -> None:
    """Greedy accuracy per policy and task through lm-eval (run by `greedy.greedy`)."""
    lm_eval_greedy.greedy(ctx)
