"""AdaptiveStep experiments: `bon` (Best-of-N, Figs. 4-5 / Tables 2, 3, 6), `tvd` (Table 1), `cost` (§4.4).

Every experiment runs the cached pipeline (`bench.adaptive_step.pipeline`) up to what it needs, then
reports metrics named as in issue 5: `bon_acc.<arm>.<N>`, `acc.greedy` / `acc.tvd` / `prm_calls`,
`rollouts.<split>` / `tokens.<split>` / `steps_per_solution.<split>` and the confidence/newline ratios.
Accuracies are in percent, like the paper's tables.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from bench.adaptive_step import figures
from bench.adaptive_step import pipeline as P
from bench.adaptive_step import steps as S
from bench.core.errors import ConfigError
from bench.core.plots import run_view
from bench.core.runner import RunContext, register

PAPER = "adaptive_step"


def _check_runnable(ctx: RunContext) -> None:
    # `bon` with `released:` (paper profile) dispatches to bench/adaptive_step/released.py before this check.
    if ctx.cfg.get("released") is not None:
        raise ConfigError("profile", f"`{ctx.experiment}` on the `paper` profile is not implemented: only `bon` "
                          "(released PRMs scoring released candidates) runs there. TVD and construction cost need "
                          "the 7B policy in the suite's decoding loop (generation.py), which builds its tensors on "
                          "the CPU; use profile=smoke or profile=cpu for them")


def _policy_metrics(ctx: RunContext, b: P.Built) -> None:
    ctx.metric("policy.greedy_acc", 100 * b.pol.greedy_acc, "%", "none",
               note=f"greedy accuracy of the policy on {ctx.cfg.scale.greedy_eval_questions} test questions")
    ctx.metric("samples.test_acc", 100 * float(np.mean([r["correct"] for r in b.test_rows])), "%", "none",
               note="accuracy of one sampled test candidate (temperature sampling)")
    # provenance: the cache folders (cache_dir()/adaptive_step/<stage>-<key>) this record was computed from
    ctx.record.extra["stage_keys"] = {"policy": b.pol.key, **b.keys}
    ctx.record.extra["tau"] = b.division["tau"]


def _train_and_score(ctx: RunContext, b: P.Built, split: str) -> tuple[list[list[float]], str, Any]:
    cfg = ctx.cfg
    lab_key = P.config_key([b.keys["division"], split, int(cfg.scale.rollouts)])
    prm, key = P.train_prm(cfg, b.pol, b.prm_probs, b.prm_rows, b.division["prm"][split],
                           b.labels[split]["labels"], split, lab_key, ctx.log)
    sc = P.score_candidates(cfg, b.pol, prm, key, b.test_probs, b.test_rows, b.division["test"][split], False,
                            b.keys["samples_test"], ctx.log)
    return sc, key, prm


def bon_sweep(ctx: RunContext, pickers: dict[str, Any], groups: dict[int, list[int]], correct: list[bool],
              answers: list[Any], note: str) -> tuple[dict[str, dict[int, list[float]]], list[int], list[int],
                                                       list[dict[str, Any]]]:
    """Best-of-N for every arm, N and seed; writes `bon_acc.<arm>.<N>` (shared by the miniature and the
    released-PRM paths, so both report the same arms the same way).

    Args:
        pickers: arm name -> function choosing one candidate index from a list of drawn candidates; the
            baseline arms `majority`, `random` and `pass_at_n` are added here.
        groups: question -> indices of its candidate pool.
        correct: per candidate, whether its final answer is right.
        answers: per candidate, its answer key for majority voting (None never wins).
        note: appended to each metric's note.

    Returns:
        (results[arm][N] = accuracy per seed in %, the Ns run, the seeds, table rows "mean ± sd" per arm).
    """
    cfg = ctx.cfg
    pickers = {**pickers, "majority": P.majority_pick(answers, random.Random(0)),
               "random": lambda cand: cand[0],  # candidates are drawn in random order
               "pass_at_n": lambda cand: next((i for i in cand if correct[i]), cand[0])}
    ns = [int(n) for n in cfg.experiment.n if int(n) <= min(len(v) for v in groups.values())]
    seeds = [int(cfg.seed) + s for s in range(int(cfg.experiment.seeds))]
    results: dict[str, dict[int, list[float]]] = {arm: {} for arm in pickers}
    for arm, pick in pickers.items():
        for n in ns:
            accs = [100 * P.best_of_n(groups, pick, correct, n, seed) for seed in seeds]
            results[arm][n] = accs
            ctx.metric(f"bon_acc.{arm}.{n}", float(np.mean(accs)), "%", "higher",
                       note=f"Best-of-{n}, {len(groups)} questions, mean of {len(seeds)} seeds{note}",
                       stderr=float(np.std(accs, ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else None)
    rows = [{"arm": arm, **{f"N={n}": f"{np.mean(v[n]):.1f} ± {np.std(v[n], ddof=1) if len(v[n]) > 1 else 0:.1f}"
                            for n in ns}} for arm, v in results.items()]
    return results, ns, seeds, rows


@register(PAPER, "bon")
def bon(ctx: RunContext) -> None:
    """Best-of-N with confidence-PRM, newline-PRM (and random-PRM), ORM, majority, random pick, pass@N."""
    if ctx.cfg.get("released") is not None:  # paper profile: released PRMs on released candidates (Tables 2/3/6)
        from bench.adaptive_step import released

        return released.run_bon(ctx)
    _check_runnable(ctx)
    cfg = ctx.cfg
    b = P.build_data(cfg, ctx.log)
    _policy_metrics(ctx, b)
    scores: dict[str, list[list[float]]] = {}
    for split in cfg.method.splits:
        scores[f"{split}_prm"], _, _ = _train_and_score(ctx, b, split)
    first = list(cfg.method.splits)[0]
    orm, orm_key = P.train_prm(cfg, b.pol, b.prm_probs, b.prm_rows, b.division["prm"][first],
                               b.labels[first]["labels"], "orm", b.keys["samples_prm"], ctx.log)
    scores["orm"] = P.score_candidates(cfg, b.pol, orm, orm_key, b.test_probs, b.test_rows,
                                       b.division["test"][first], True, b.keys["samples_test"], ctx.log)

    correct = [bool(r["correct"]) for r in b.test_rows]
    # math: the GSM8K number / MATH500 box as before; code: the normalised program (pipeline.answer_key)
    answers = [P.answer_key(cfg, b.pol.decode(r["ids"]), b.test_probs[r["q"]]) for r in b.test_rows]
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(b.test_rows):
        groups.setdefault(r["q"], []).append(i)

    pickers: dict[str, Any] = {}
    for name, sc in scores.items():
        aggs = ["min"] if name == "orm" else list(cfg.method.aggregations)
        for agg in aggs:
            vals = [S.aggregate(s, agg) for s in sc]
            arm = name if agg == "min" else f"{name}_{agg}"  # min is the paper's default aggregation
            pickers[arm] = P.score_pick(vals)
            if agg == "min":  # how well the verifier separates correct from wrong candidates
                w, n_q = S.within_group_auc(vals, correct, groups)
                ctx.metric(f"prm_auc.{name}.within_question", w, "AUC", "higher",
                           note=f"mean over the {n_q} test questions with both correct and wrong candidates; "
                                "0.5 = chance; what Best-of-N depends on")
                ctx.metric(f"prm_auc.{name}.pooled", S.auc(vals, correct), "AUC", "none",
                           note="all test candidates pooled: also rewards knowing which questions are easy")
    results, ns, seeds, rows = bon_sweep(ctx, pickers, groups, correct, answers, "")
    ctx.table("bon", f"Best-of-N accuracy (%) on {cfg.task.name}, mean ± sd over {len(seeds)} seeds", rows, notes=[
        f"policy {cfg.model.name}, greedy {100 * b.pol.greedy_acc:.1f}%; {len(groups)} test questions, "
        f"pool of {cfg.scale.test_samples} candidates each; N drawn without replacement per seed",
        "PRM arms aggregate step scores with min (paper default); `_mean` / `_last` are the other aggregations",
        f"tau = {b.division['tau']:.4g} ({cfg.method.percentile}th percentile of pooled confidences)"])
    # The figure is drawn from the long-form CSV by the same code the report uses (one code path).
    ctx.csv("bon_long", figures.bon_rows(results, seeds), columns=figures.BON_COLUMNS)
    ctx.figures(figures.rebuild(ctx.out_dir, run_view(ctx)))


@register(PAPER, "tvd")
def tvd(ctx: RunContext) -> None:
    """Token-level value-guided decoding with the confidence-split PRM vs greedy (Table 1)."""
    _check_runnable(ctx)
    cfg = ctx.cfg
    split = str(cfg.experiment.prm)
    b = P.build_data(cfg, ctx.log, label_splits=[split])
    _policy_metrics(ctx, b)
    _, key, prm = _train_and_score(ctx, b, split)
    out = P.run_tvd(cfg, b.pol, prm, key, ctx.log)
    rows = out["rows"]
    n = len(rows)
    g = 100 * float(np.mean([r["greedy"] for r in rows]))
    v = 100 * float(np.mean([r["tvd"] for r in rows]))
    calls = int(sum(r["calls"] for r in rows))
    se = lambda p: float(np.sqrt(p * (100 - p) / max(1, n)))  # noqa: E731  binomial stderr in %
    ctx.metric("acc.greedy", g, "%", "higher", note=f"{n} test questions", stderr=se(g))
    ctx.metric("acc.tvd", v, "%", "higher", note=f"{split}-PRM, threshold {cfg.tvd.threshold}, top-{cfg.tvd.top_k}",
               stderr=se(v))
    ctx.metric("prm_calls", calls, "candidates scored", "none", note="total over the test questions")
    ctx.metric("prm_calls_per_question", calls / max(1, n), "candidates", "none")
    ctx.metric("tvd.changed_fraction", 100 * float(np.mean([r["changed"] for r in rows])), "%", "none",
               note="questions whose TVD output differs from greedy")
    wins = sum(r["tvd"] and not r["greedy"] for r in rows)
    losses = sum(r["greedy"] and not r["tvd"] for r in rows)
    ctx.table("tvd", "Token-level value-guided decoding vs greedy", [
        {"decoding": "greedy", "accuracy (%)": g, "PRM calls": 0},
        {"decoding": f"TVD ({split}-PRM)", "accuracy (%)": v, "PRM calls": calls}],
        notes=[f"{n} questions; TVD fixes {wins}, breaks {losses}",
               f"threshold {cfg.tvd.threshold} on the top-1 probability, top-{cfg.tvd.top_k} candidates"])


@register(PAPER, "cost")
def cost(ctx: RunContext) -> None:
    """Construction cost per split (rollouts, tokens, wall time) and split-point token types."""
    _check_runnable(ctx)
    cfg = ctx.cfg
    splits = list(cfg.experiment.splits)
    b = P.build_data(cfg, ctx.log, label_splits=splits)
    _policy_metrics(ctx, b)
    ctx.metric("tau", b.division["tau"], "probability", "none", note=f"{cfg.method.percentile}th percentile")
    rows = []
    for sp in splits:
        c: S.Cost = b.labels[sp]["cost"]
        ctx.metric(f"rollouts.{sp}", c.rollouts, "rollouts", "lower", note=f"K = {cfg.scale.rollouts} per step prefix")
        ctx.metric(f"tokens.{sp}", c.tokens, "tokens", "lower", note="tokens generated by the rollouts")
        ctx.metric(f"steps_per_solution.{sp}", c.steps_per_solution, "markers", "lower",
                   note="markers per solution, closing marker included")
        ctx.metric(f"seconds.{sp}", c.seconds, "s", "lower", note="wall time of the rollouts")
        pos = float(np.mean([v for lab in b.labels[sp]["labels"] for v in lab["hard"]]))
        rows.append({"split": sp, "solutions": c.solutions, "markers": c.markers,
                     "steps/solution": c.steps_per_solution, "rollouts": c.rollouts, "tokens": c.tokens,
                     "seconds": c.seconds, "positive labels": pos})
    if "confidence" in splits and "newline" in splits:
        cc, cn = b.labels["confidence"]["cost"], b.labels["newline"]["cost"]
        for what, a, z in (("rollouts", cc.rollouts, cn.rollouts), ("tokens", cc.tokens, cn.tokens),
                           ("markers", cc.markers, cn.markers), ("seconds", cc.seconds, cn.seconds)):
            ctx.metric(f"ratio.{what}.confidence_over_newline", a / z if z else float("nan"), "ratio", "lower",
                       note="paper: 0.74 markers on its shipped GSM8K examples; 'over 30% lower' cost")
    ctx.table("cost", "PRM-data construction cost per split", rows, notes=[
        f"{len(b.prm_rows)} solutions ({cfg.scale.prm_questions} questions x {cfg.scale.prm_samples} samples); "
        f"K = {cfg.scale.rollouts} rollouts per non-closing marker; tau = {b.division['tau']:.4g}"])
    ta, ts = b.division["types_all"], b.division["types_split"]
    na, ns = sum(ta.values()), max(1, sum(ts.values()))
    trows = []
    for k in sorted(set(ta) | set(ts), key=lambda k: -ts.get(k, 0)):
        sa, ss = ta.get(k, 0) / na, ts.get(k, 0) / ns
        trows.append({"token type": k, "share of all tokens": 100 * sa, "share of split points": 100 * ss,
                      "over-representation": ss / sa if sa else float("nan")})
        ctx.metric(f"split_share.{k}", 100 * ss, "%", "none", note=f"all tokens: {100 * sa:.1f}%")
    ctx.table("split_token_types", "Token types at confidence split points vs all sampled tokens", trows)
    ctx.figures(figures.rebuild(ctx.out_dir, run_view(ctx)))  # from split_token_types.csv, as the report does
from bench.adaptive_step import greedy as _greedy  # noqa: E402,F401  (registers experiment `greedy`)
