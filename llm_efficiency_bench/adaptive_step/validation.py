"""Validation questions: how each verifier separates candidates, and the PRM recipe chosen on them.

Validation questions are their own split (`val`: a seed salt disjoint from the policy's training questions,
the PRM-data questions and the Best-of-N test questions), sampled like the test questions
(`samples_val`: `scale.val_questions` x `scale.val_samples`). Nothing measured on the test questions feeds
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

import copy
import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from llm_efficiency_bench.adaptive_step import checkers as C
from llm_efficiency_bench.adaptive_step import steps as S
from llm_efficiency_bench.adaptive_step.bon import best_of_n, groups_of, score_pick
from llm_efficiency_bench.adaptive_step.labels import oracle_labels
from llm_efficiency_bench.adaptive_step.pipeline import Built, build_data, train_split_prm
from llm_efficiency_bench.adaptive_step.samples import boundaries_of, sample_solutions
from llm_efficiency_bench.adaptive_step.stage import Log
from llm_efficiency_bench.adaptive_step.tasks import Problem
from llm_efficiency_bench.core.cache import to_plain


@dataclass
class ValData:
    """Validation candidates: questions, sampled rows, step boundaries per split, oracle step labels per split."""

    probs: list[Problem]
    rows: list[dict[str, Any]]
    bounds: dict[str, list[list[int]]]
    oracle: dict[str, list[list[int]]] | None
    key: str

    @property
    def correct(self) -> list[bool]:
        return [bool(r["correct"]) for r in self.rows]

    @property
    def groups(self) -> dict[int, list[int]]:
        return groups_of([r["q"] for r in self.rows])


def build_val(cfg: Any, b: Built, log: Log) -> ValData | None:
    """`samples_val` (cached) and its division with the PRM data's tau; None when `scale.val_questions` is 0."""
    if int(cfg.scale.get("val_questions", 0) or 0) <= 0:
        return None
    probs, rows, entry = sample_solutions(cfg, b.pol, "val", log)
    bounds = boundaries_of(b.pol, rows, b.division["tau"], random.Random(int(cfg.seed) * 31 + 2))
    oracle = ({sp: oracle_labels(b.pol, rows, bnd, probs) for sp, bnd in bounds.items()}
              if getattr(b.pol.task, "has_oracle", False) else None)
    return ValData(probs, rows, bounds, oracle, entry.key)


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
    a = C.extract_gsm8k_answer(text)
    try:
        return math.log1p(abs(float(a)))
    except (TypeError, ValueError):
        return float("nan")


def verifier_report(cfg: Any, b: Built, v: ValData, step_scores: list[list[float]], agg: str = "min",
                    oracle_split: str | None = None, seeds: int = 5) -> dict[str, float]:
    """The diagnosis of one verifier on validation candidates (module docstring)."""
    vals = [S.aggregate(s, agg) for s in step_scores]
    correct, groups = v.correct, v.groups
    within, n_q = S.within_group_auc(vals, correct, groups)
    out = {"within_auc": within, "pooled_auc": S.auc(vals, correct), "questions_both": float(n_q)}
    pick = score_pick(vals)
    pool = min(len(i) for i in groups.values())
    for n in [int(x) for x in cfg.select.top1_n]:
        if n <= pool:
            out[f"top1@{n}"] = 100 * float(np.mean([best_of_n(groups, pick, correct, n, int(cfg.seed) + s)
                                                     for s in range(seeds)]))
    texts = [b.pol.decode(r["ids"]) for r in v.rows]
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
    return {**to_plain(cfg.prm), **dict(variant)}


def val_scores(cfg: Any, b: Built, v: ValData, prm: Any, key: str, split: str, log: Log,
               orm: bool = False) -> list[list[float]]:
    """Step scores of every validation candidate under one PRM (cached like the test scores)."""
    from llm_efficiency_bench.adaptive_step.prm import score_candidates

    return score_candidates(cfg, b.pol, prm, key, v.probs, v.rows, v.bounds[split], orm, v.key, log)


def train_fit(cfg: Any, b: Built, prm: Any, key: str, split: str, labels: Sequence[Sequence[float]], log: Log,
              orm: bool = False) -> float:
    """The PRM's agreement with its own training labels (its scores of the PRM-data solutions)."""
    from llm_efficiency_bench.adaptive_step.prm import score_candidates

    sc = score_candidates(cfg, b.pol, prm, key, b.prm_probs, b.prm_rows, b.division["prm"][split], orm,
                          b.keys["samples_prm"], log)
    return fit_accuracy(sc, [[lab[-1]] for lab in labels] if orm else labels)


def auc_validator(cfg: Any, b: Built, v: ValData, split: str, orm: bool = False) -> tuple[str, Any]:
    """(key, model -> validation within-question AUC of `min`-aggregated scores): early stopping's criterion."""
    from llm_efficiency_bench.adaptive_step import steps as St
    from llm_efficiency_bench.adaptive_step.generation import label_scores

    seqs, poss = [], []
    for r, bnd in zip(v.rows, v.bounds[split]):
        base = b.pol.prompt_ids(v.probs[r["q"]])
        sol, pos = St.insert_markers(r["ids"], [] if orm else bnd, b.pol.marker_id)
        seqs.append(base + sol)
        poss.append([len(base) + p for p in pos])
    correct, groups = v.correct, v.groups

    def score(model: Any) -> float:
        sc = label_scores(model, seqs, poss, b.pol.good_id, b.pol.bad_id, b.pol.eos_id, batch=int(cfg.scale.batch))
        return St.within_group_auc([min(s) for s in sc], correct, groups)[0]

    return f"{v.key}:{split}:{int(orm)}", score


def with_data(cfg: Any, data: dict[str, Any] | None) -> Any:
    """`cfg` with a variant's PRM-data sizes (`scale.prm_questions` / `scale.prm_samples`) applied."""
    if not data:
        return cfg
    from omegaconf import OmegaConf

    out = copy.deepcopy(cfg)
    for k, val in data.items():
        OmegaConf.update(out, f"scale.{k}", val, merge=False)
    return out


def choose_recipe(ctx: Any, b: Built, v: ValData | None, write: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
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
        return to_plain(cfg.prm), {}
    split = str(sel.split)
    rows, best = [], None
    for name, over in to_plain(sel.variants).items():
        over = dict(over or {})
        data = dict(over.pop("data", None) or {})
        cfg_v = with_data(cfg, data)
        b_v = build_data(cfg_v, ctx.log, label_splits=[split]) if data else b
        v_v = build_val(cfg_v, b_v, ctx.log) if data else v
        assert v_v is not None
        pc = recipe(cfg, over)
        prm, key = train_split_prm(cfg_v, b_v, split, ctx.log, pc, auc_validator(cfg_v, b_v, v_v, split))
        rep = verifier_report(cfg_v, b_v, v_v, val_scores(cfg_v, b_v, v_v, prm, key, split, ctx.log), oracle_split=split)
        kind = str(pc.get("labels", "hard"))
        fit = train_fit(cfg_v, b_v, prm, key, split, [lab[kind] for lab in b_v.labels[split]["labels"]], ctx.log)
        info = getattr(prm, "bench_info", {}) or {}
        text = ", ".join([f"{k}={v_}" for k, v_ in over.items()] + [f"{k}={v_}" for k, v_ in data.items()])
        rows.append({"variant": name, "overrides": text or "-", "fit (%)": fit, **rep,
                     "epoch kept": info.get("best_epoch", pc.get("epochs"))})
        score = rep["within_auc"] if rep["within_auc"] == rep["within_auc"] else -math.inf  # NaN: no contrast
        if best is None or score > best[0]:
            best = (score, name, pc, data)
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
            f"{len(v.groups)} validation questions x {cfg.scale.val_samples} candidates (split `val`, disjoint "
            "from PRM data and test); chosen by within_auc only: "
            f"**{best[1]}** ({best[0]:.3f})",
            "fit = agreement of P(good) >= 0.5 with the PRM's own training labels; step_acc = agreement with the "
            "exact oracle step labels on validation solutions",
            "corr_* = within-question Spearman correlation of the min score with log(1+|answer|), step count, "
            "token length", "early_stop keeps the epoch with the best validation within-question AUC"], digits=3)
    ctx.log(f"select: PRM recipe `{best[1]}` (validation within-question AUC {best[0]:.3f})")
    return best[2], best[3]


def chosen_setup(ctx: Any, b: Built, write: bool = True, label_splits: Sequence[str] | None = None
                 ) -> tuple[Any, Built, ValData | None, dict[str, Any]]:
    """Validation data, the chosen recipe, and the pipeline data that recipe trains on.

    Returns:
        (config, built data, validation data, `prm` recipe): when the chosen variant has its own PRM-data sizes,
        the config carries them and the data is rebuilt for them (cached stages), so every arm uses it.
    """
    v = build_val(ctx.cfg, b, ctx.log)
    pcfg, data = choose_recipe(ctx, b, v, write=write)
    if not write:  # `bon` records it in choose_recipe
        ctx.record.extra["prm_recipe"] = {**pcfg, **({"data": data} if data else {})}
    if not data:
        return ctx.cfg, b, v, pcfg
    cfg = with_data(ctx.cfg, data)
    b = build_data(cfg, ctx.log, label_splits=label_splits)
    return cfg, b, build_val(cfg, b, ctx.log), pcfg
