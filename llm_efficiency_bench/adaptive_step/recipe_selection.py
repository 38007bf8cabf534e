"""The PRM recipe chosen on validation questions, and how each verifier separates candidates there.

Validation questions are their own split (`val`: a seed salt disjoint from the policy's training questions,
the PRM-data questions and the Best-of-N test questions), sampled like the test questions
(`samples_val`: `samples.val_questions` x `samples.val_samples`). Nothing measured on the test questions feeds
back into a choice: the PRM recipe (`select.variants`) is picked by validation within-question AUC.

`verifier_report` is the diagnosis of one verifier on validation candidates:

* `within_auc` (mean per-question AUC, what Best-of-N uses) vs `pooled_auc` (all candidates pooled, which also
  rewards knowing which questions are easy);
* `top1@N`: Best-of-N accuracy on validation questions at N = 16 and 64 (mean over seeded draws);
* within-question Spearman correlations of the solution score with the answer's magnitude (log(1+|answer|)),
  the number of steps (markers) and the length in tokens: a verifier that learned "small numbers look right"
  or "fewer steps score higher under `min`" shows it here;
* `step_acc`: agreement of P(good) >= 0.5 with the exact oracle step labels (synthetic task), and `fit`:
  agreement with its own training labels on the PRM-data solutions.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from llm_efficiency_bench.adaptive_step import checkers, stage_settings, steps
from llm_efficiency_bench.adaptive_step.bon import best_of_n, groups_of, score_pick
from llm_efficiency_bench.adaptive_step.generation import label_scores
from llm_efficiency_bench.adaptive_step.labels import oracle_labels
from llm_efficiency_bench.adaptive_step.pipeline import PipelineData, build_data, split_scores, train_split_prm
from llm_efficiency_bench.adaptive_step.samples import Samples, boundaries_of, sample_solutions
from llm_efficiency_bench.adaptive_step.stage import Log
from llm_efficiency_bench.adaptive_step.stage_inputs import Validator
from llm_efficiency_bench.core.cache import to_plain


@dataclass
class ValData:
    """Validation candidates: the `val` samples, their step boundaries per split (the PRM data's tau), and the
    exact oracle step labels per split (tasks with exact steps)."""

    samples: Samples
    bounds: dict[str, list[list[int]]]
    oracle: dict[str, list[list[int]]] | None

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.samples.rows

    @property
    def correct(self) -> list[bool]:
        return [bool(r["correct"]) for r in self.rows]

    @property
    def groups(self) -> dict[int, list[int]]:
        return groups_of([r["q"] for r in self.rows])


def build_val(cfg: Any, data: PipelineData, log: Log) -> ValData | None:
    """`samples_val` (cached) and its division with the PRM data's tau; None when `samples.val_questions` is 0."""
    if stage_settings.n_questions(cfg, "val") <= 0:
        return None
    pol = data.policy
    samples = sample_solutions(stage_settings.samples_inputs(cfg, pol.key, "val"), pol,
                               stage_settings.run_options(cfg), log)
    bounds = boundaries_of(pol, samples.rows, data.division.tau, random.Random(int(cfg.seed) * 31 + 2))
    oracle = ({sp: oracle_labels(pol, samples.rows, bnd, samples.probs) for sp, bnd in bounds.items()}
              if getattr(pol.task, "has_oracle", False) else None)
    return ValData(samples, bounds, oracle)


def _spearman_within(x: Sequence[float], y: Sequence[float], groups: dict[int, list[int]]) -> float:
    """Mean over questions of the Spearman correlation of x and y among that question's candidates."""
    from scipy.stats import spearmanr

    vals = []
    for idx in groups.values():
        xs, ys = np.array([x[i] for i in idx], float), np.array([y[i] for i in idx], float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if ok.sum() < 3 or np.ptp(xs[ok]) == 0 or np.ptp(ys[ok]) == 0:
            continue
        vals.append(float(spearmanr(xs[ok], ys[ok]).statistic))
    return float(np.mean(vals)) if vals else float("nan")


def _magnitude(text: str) -> float:
    a = checkers.extract_gsm8k_answer(text)
    try:
        return math.log1p(abs(float(a)))
    except (TypeError, ValueError):
        return float("nan")


def verifier_report(cfg: Any, data: PipelineData, v: ValData, step_scores: list[list[float]], agg: str = "min",
                    oracle_split: str | None = None, seeds: int = 5) -> dict[str, float]:
    """The diagnosis of one verifier on validation candidates (module docstring)."""
    vals = [steps.aggregate(s, agg) for s in step_scores]
    correct, groups = v.correct, v.groups
    within, n_q = steps.within_group_auc(vals, correct, groups)
    out = {"within_auc": within, "pooled_auc": steps.auc(vals, correct), "questions_both": float(n_q)}
    pick = score_pick(vals)
    pool = min(len(i) for i in groups.values())
    for n in [int(x) for x in cfg.select.top1_n]:
        if n <= pool:
            out[f"top1@{n}"] = 100 * float(np.mean([best_of_n(groups, pick, correct, n, int(cfg.seed) + s)
                                                     for s in range(seeds)]))
    texts = [data.policy.decode(r["ids"]) for r in v.rows]
    out["corr_magnitude"] = _spearman_within(vals, [_magnitude(t) for t in texts], groups)
    out["corr_steps"] = _spearman_within(vals, [float(len(s)) for s in step_scores], groups)
    out["corr_length"] = _spearman_within(vals, [float(len(r["ids"])) for r in v.rows], groups)
    if v.oracle is not None and oracle_split is not None:
        lab = [x for s in v.oracle[oracle_split] for x in s]
        pred = [p >= 0.5 for s in step_scores for p in s]
        if len(lab) == len(pred):
            out["step_acc"] = 100 * float(np.mean([bool(a) == p for a, p in zip(lab, pred)]))
    return out


def fit_accuracy(train_scores: list[list[float]], labels: Sequence[Sequence[float]]) -> float:
    """Agreement (%) of P(good) >= 0.5 with the training labels (>= 0.5 counts as good) on the PRM data."""
    pairs = [(p >= 0.5, t >= 0.5) for s, lab in zip(train_scores, labels) for p, t in zip(s, lab)]
    return 100 * float(np.mean([a == z for a, z in pairs])) if pairs else float("nan")


def recipe(cfg: Any, variant: dict[str, Any]) -> dict[str, Any]:
    """The `prm` block with one selection variant's overrides applied."""
    return {**stage_settings.prm_recipe(cfg), **dict(variant)}


def val_scores(cfg: Any, data: PipelineData, v: ValData, prm: Any, key: str, split: str, log: Log,
               orm: bool = False) -> list[list[float]]:
    """Step scores of every validation candidate under one PRM (cached like the test scores)."""
    return split_scores(cfg, data, v.samples, v.bounds[split], prm, key, log, orm)


def train_fit(cfg: Any, data: PipelineData, prm: Any, key: str, split: str, labels: Sequence[Sequence[float]],
              log: Log, orm: bool = False) -> float:
    """The PRM's agreement with its own training labels (its scores of the PRM-data solutions)."""
    sc = split_scores(cfg, data, data.prm, data.division.prm[split], prm, key, log, orm)
    return fit_accuracy(sc, [[lab[-1]] for lab in labels] if orm else labels)


def auc_validator(cfg: Any, data: PipelineData, v: ValData, split: str, orm: bool = False) -> Validator:
    """Early stopping's criterion: the validation within-question AUC of `min`-aggregated scores."""
    pol = data.policy
    seqs, poss = [], []
    for r, bnd in zip(v.rows, v.bounds[split]):
        base = pol.prompt_ids(v.samples.probs[r["q"]])
        sol, pos = steps.insert_markers(r["ids"], [] if orm else bnd, pol.marker_id)
        seqs.append(base + sol)
        poss.append([len(base) + p for p in pos])
    correct, groups = v.correct, v.groups
    bs = stage_settings.batch(cfg)

    def score(model: Any) -> float:
        sc = label_scores(model, seqs, poss, pol.good_id, pol.bad_id, pol.eos_id, batch=bs)
        return steps.within_group_auc([min(s) for s in sc], correct, groups)[0]

    return Validator(f"{v.samples.key}:{split}:{int(orm)}", score)


def choose_recipe(ctx: Any, data: PipelineData, v: ValData | None, write: bool = True
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PRM recipe for every learned arm: the `select.variants` entry whose `select.split` PRM has the
    highest validation within-question AUC (the test questions are never scored here).

    A variant overrides `prm` settings, and may set `data: {prm_questions, prm_samples}` (more PRM-data
    questions / candidates per question): its PRM data is then sampled and labelled for it (cached stages).

    Args:
        write: put the `prm_selection` table and `select.*` metrics into the record (`bon`); `tvd` only reads.

    Returns:
        (the chosen `prm` block, the chosen variant's `data` sizes or {}); the `prm` config itself and {} when
        selection is off or there is no validation set.
    """
    cfg = ctx.cfg
    sel = cfg.get("select") or {}
    if v is None or not sel or not sel.get("enabled", False):
        return stage_settings.prm_recipe(cfg), {}
    split = str(sel.split)
    rows, best = [], None
    for name, over in to_plain(sel.variants).items():
        over = dict(over or {})
        sizes = dict(over.pop("data", None) or {})
        cfg_v = stage_settings.with_prm_data(cfg, sizes)
        data_v = build_data(cfg_v, ctx.log, label_splits=[split]) if sizes else data
        v_v = build_val(cfg_v, data_v, ctx.log) if sizes else v
        assert v_v is not None
        pc = recipe(cfg, over)
        prm, key = train_split_prm(cfg_v, data_v, split, ctx.log, pc, auc_validator(cfg_v, data_v, v_v, split))
        rep = verifier_report(cfg_v, data_v, v_v, val_scores(cfg_v, data_v, v_v, prm, key, split, ctx.log),
                              oracle_split=split)
        kind = str(pc.get("labels", "hard"))
        fit = train_fit(cfg_v, data_v, prm, key, split, [lab[kind] for lab in data_v.labels[split].labels], ctx.log)
        info = getattr(prm, "bench_info", {}) or {}
        text = ", ".join([f"{k}={v_}" for k, v_ in over.items()] + [f"{k}={v_}" for k, v_ in sizes.items()])
        rows.append({"variant": name, "overrides": text or "-", "fit (%)": fit, **rep,
                     "epoch kept": info.get("best_epoch", pc.get("epochs"))})
        score = rep["within_auc"] if rep["within_auc"] == rep["within_auc"] else -math.inf  # NaN: no contrast
        if best is None or score > best[0]:
            best = (score, name, pc, sizes)
    assert best is not None, "select.variants is empty"
    if best[0] == -math.inf:  # no validation question has both right and wrong candidates (tiny runs)
        best = (float("nan"), best[1], best[2], best[3])
        ctx.log("select: no validation question has both right and wrong candidates; first variant kept")
    if write:
        for r in rows:
            ctx.metric(f"select.{r['variant']}.val_within_auc", r["within_auc"], "AUC", "higher",
                       note=f"{split}-PRM, recipe `{r['overrides']}`, {len(v.groups)} validation questions")
        ctx.metric("select.chosen.val_within_auc", best[0], "AUC", "higher",
                   note=f"chosen recipe `{best[1]}` (highest validation within-question AUC); quality bar >= 0.85")
        ctx.record.extra["prm_recipe"] = {"variant": best[1], **best[2], **({"data": best[3]} if best[3] else {})}
        ctx.table("prm_selection", f"PRM recipe chosen on validation questions ({split}-PRM)", rows, notes=[
            f"{len(v.groups)} validation questions x {cfg.samples.val_samples} candidates (split `val`, disjoint "
            "from PRM data and test); chosen by within_auc only: "
            f"**{best[1]}** ({best[0]:.3f})",
            "fit = agreement of P(good) >= 0.5 with the PRM's own training labels; step_acc = agreement with the "
            "exact oracle step labels on validation solutions",
            "corr_* = within-question Spearman correlation of the min score with log(1+|answer|), step count, "
            "token length", "early_stop keeps the epoch with the best validation within-question AUC"], digits=3)
    ctx.log(f"select: PRM recipe `{best[1]}` (validation within-question AUC {best[0]:.3f})")
    return best[2], best[3]


def chosen_setup(ctx: Any, data: PipelineData, write: bool = True, label_splits: Sequence[str] | None = None
                 ) -> tuple[Any, PipelineData, ValData | None, dict[str, Any]]:
    """Validation data, the chosen recipe, and the pipeline data that recipe trains on.

    Returns:
        (config, pipeline data, validation data, `prm` recipe): when the chosen variant has its own PRM-data
        sizes, the config carries them and the data is rebuilt for them (cached stages), so every arm uses it.
    """
    v = build_val(ctx.cfg, data, ctx.log)
    chosen, sizes = choose_recipe(ctx, data, v, write=write)
    if not write:  # `bon` records it in choose_recipe
        ctx.record.extra["prm_recipe"] = {**chosen, **({"data": sizes} if sizes else {})}
    if not sizes:
        return ctx.cfg, data, v, chosen
    cfg = stage_settings.with_prm_data(ctx.cfg, sizes)
    data = build_data(cfg, ctx.log, label_splits=label_splits)
    return cfg, data, build_val(cfg, data, ctx.log), chosen
