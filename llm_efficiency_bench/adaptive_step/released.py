"""Best-of-N with the paper's released PRMs on released candidate solutions (experiment `bon_released`).

Paper §4.2 / Figs. 4-5, Tables 2, 3 and 6: every candidate solution of a question is scored by a PRM, the
step scores are aggregated (min by default; mean / last as well) and the best-scored candidate's final answer
is checked. The PRMs are the released checkpoints (`released_prm.py`), the candidates a file in the released
evaluation format (`candidates.py`).

Scores and candidate correctness are cached stages (`cache_dir()/adaptive_step/released_*-<hash>`, keyed by
the file's SHA-256, the PRM and its spec), so re-aggregating or adding N never rescores.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from llm_efficiency_bench.adaptive_step import figures, stage_settings
from llm_efficiency_bench.adaptive_step.bon import BestOfNSettings, bon_sweep, score_pick
from llm_efficiency_bench.adaptive_step.candidates import Row, arm_solutions, candidate_truth, load_candidates, marker_counts, stage_key
from llm_efficiency_bench.adaptive_step.released_prm import (encode_for_prm, label_ids, load_prm, marker_scores, prm_fingerprint,
                                              prm_source, prm_spec)
from llm_efficiency_bench.adaptive_step.stage import Log, bar, stage
from llm_efficiency_bench.adaptive_step.steps import aggregate
from llm_efficiency_bench.core.cache import save_atomic
from llm_efficiency_bench.core.checkpoint import Checkpoint
from llm_efficiency_bench.core.experiment import experiment
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import Rule

def score_arm(cfg: Any, arm: str, rows: Sequence[Row], sha: str, loaded: dict[str, Any], log: Log
              ) -> tuple[list[list[float]], dict[str, int]]:
    """Step scores of every candidate under one arm (cached stage `released_scores`, resumable).

    Args:
        arm: name in `released.arms` (`{prm: <released.prms key>, steps: newline | <field>}`).
        loaded: PRMs loaded so far in this run (name -> (model, tokenizer)), reused across arms.

    Returns:
        (step scores per candidate, stats: misaligned / marker_mismatch / unscored / markers).
    """
    a = cfg.released.arms[arm]
    name, steps = str(a.prm), str(a.steps)
    spec = prm_spec(cfg, name)
    texts, misaligned = arm_solutions(cfg, arm, steps, spec, rows)
    run = stage_settings.run_options(cfg)
    entry = stage(run, "released_scores", {**stage_key(cfg, sha), "prm": prm_fingerprint(cfg, name),
                                           "spec": dataclasses.asdict(spec), "steps": steps, "dtype": str(cfg.dtype),
                                           "max_len": cfg.released.get("max_len")})

    def build(work: Path) -> dict[str, Any]:
        if name not in loaded:
            log(f"released: loading PRM {name} ({prm_source(cfg, name)})")
            loaded.clear()  # one PRM in memory at a time
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            loaded[name] = load_prm(cfg, name)
        model, tok = loaded[name]
        ids = label_ids(tok, spec, name)
        prompts = [r.prompt for r in rows for _ in r.solutions]
        questions = [r.problem.question for r in rows for _ in r.solutions]
        ck = Checkpoint(work, "partial", entry.key)
        state = ck.load() or {"scores": [], "mismatch": 0}
        bs = int(cfg.released.get("batch") or 8)
        chunk = bs * 32
        starts = list(range(len(state["scores"]), len(texts), chunk))
        for s in bar(starts, len(starts), f"released[{arm}]", run.progress):
            sl = slice(s, min(len(texts), s + chunk))
            seqs, poss, mm = encode_for_prm(tok, spec, ids, prompts[sl], questions[sl], texts[sl],
                                            cfg.released.get("max_len"))
            state["scores"] += marker_scores(model, seqs, poss, ids, bs)
            state["mismatch"] += mm
            ck.save(state)
        scores = state["scores"]
        stats = {"misaligned": misaligned, "marker_mismatch": state["mismatch"],
                 "unscored": sum(not s for s in scores), "markers": sum(len(s) for s in scores)}
        save_atomic(work / "scores.pt", scores)
        ck.clear()
        log(f"released[{arm}]: {len(scores)} candidates scored by {name}, "
            f"{stats['markers'] / max(1, len(scores)):.2f} markers each; {stats['unscored']} without a marker, "
            f"{misaligned} misaligned with `pred`")
        return {"stats": stats, "n": len(scores)}

    entry.get_or_build(build)
    return entry.load("scores.pt"), entry.info()["stats"]


def _prm_pickers(ctx: RunContext, rows: Sequence[Row], sha: str, arms: list[str]) -> dict[str, Any]:
    """One picker per PRM arm and aggregation (`<arm>` = min, `<arm>_<mean|last>`), and the arms' stats."""
    cfg = ctx.cfg
    loaded: dict[str, Any] = {}
    pickers: dict[str, Any] = {}
    prm_order = list(dict.fromkeys(str(cfg.released.arms[a].prm) for a in arms))
    for arm in sorted(arms, key=lambda a: prm_order.index(str(cfg.released.arms[a].prm))):  # each PRM loads once
        sc, st = score_arm(cfg, arm, rows, sha, loaded, ctx.log)
        for agg in cfg.method.aggregations:
            vals = [aggregate(s, str(agg)) if s else 0.0 for s in sc]  # no marker: lowest score, counted
            pickers[arm if agg == "min" else f"{arm}_{agg}"] = score_pick(vals)
        n = max(1, len(sc))
        ctx.metric(f"released.steps_per_solution.{arm}", st["markers"] / n, "markers", "none",
                   note=f"PRM {cfg.released.arms[arm].prm}, steps from {cfg.released.arms[arm].steps}")
        for what in ("misaligned", "marker_mismatch", "unscored"):
            ctx.metric(f"released.{what}.{arm}", st[what], "candidates", "lower",
                       note={"misaligned": "marked text without markers != pred (whitespace collapsed)",
                             "marker_mismatch": "marker tokens found != marker strings in the text",
                             "unscored": "no marker token in the PRM input (scored 0)"}[what])
    loaded.clear()
    return pickers


def _marker_metrics(ctx: RunContext, rows: Sequence[Row]) -> None:
    """The authors' step counts per split rule, from their own marked candidates (paper-side markers ratio)."""
    counts = marker_counts(rows)
    n = sum(len(r.solutions) for r in rows)
    for key, c in sorted(counts.items()):
        ctx.metric(f"released.markers.{key}", c, "markers", "none",
                   note=f"step markers in the file's {key} over {n} candidates (closing markers included)")
    conf, new = (str(x) for x in ctx.cfg.released.get("markers_ratio") or ("math_confidence_list", "math_hard_list"))
    if conf in counts and new in counts:
        ctx.metric("ratio.markers.confidence_over_newline", counts[conf] / counts[new], "ratio", "lower",
                   note=f"{conf} / {new} markers of the authors' candidates ({counts[conf]} / {counts[new]}): "
                        "the paper-side markers ratio, recomputed from their file")


# Same N list and seeds as the miniature's `bon`; the pool is the candidates kept per question.
BON_RELEASED_RULES = [
    Rule(("n", "/released.pool"), lambda ns, pool: pool is None or max(ns) <= pool,
         "Best-of-N sizes {0} exceed the {1} released candidates kept per question (released.pool)", "n"),
]


@experiment(settings=BestOfNSettings, rules=BON_RELEASED_RULES, figures=figures.draw_bon)
def bon_released(ctx: RunContext) -> None:
    """Best-of-N over released candidates, with the released PRMs where `released.arms` names them.

    Same selection as the miniature's `bon` (`bon.best_of_n` with the same N list and seeds, majority vote,
    random pick = first drawn, pass@N) and the same metric names `bon_acc.<arm>.<N>` (min aggregation, the
    paper's default) and `bon_acc.<arm>_<mean|last>.<N>`; PRM arms are named as in `released.arms`
    (asprm_m, asprm_l, math_shepherd, ...). Without `released.arms` (the CPU profiles: the PRMs are 7B models)
    only the PRM-free arms run, on the real candidates, with the authors' marker counts.
    """
    cfg = ctx.cfg
    rows, sha = load_candidates(cfg)
    arms = list((cfg.released.get("arms") or {}).keys())
    fname = Path(str(cfg.released.candidates)).name
    ctx.log(f"released: {len(rows)} questions, {sum(len(r.solutions) for r in rows)} candidates "
            f"from {fname} (sha256 {sha[:12]})")
    if not arms:
        ctx.log("released: no `released.arms` on this profile: PRM scoring skipped (the released PRMs are 7B "
                "models, profile=paper); majority, random pick and pass@N run on the real candidates")
    correct, answers = candidate_truth(cfg, rows, sha)
    groups: dict[int, list[int]] = {}
    i = 0
    for q, r in enumerate(rows):
        groups[q] = list(range(i, i + len(r.solutions)))
        i += len(r.solutions)
    pickers = _prm_pickers(ctx, rows, sha, arms)
    ctx.metric("released.candidate_acc", 100 * float(np.mean(correct)), "%", "none",
               note="accuracy of one candidate (all candidates of the pool)")
    _marker_metrics(ctx, rows)
    what = "the released PRMs" if arms else "no PRM (PRM-free arms only)"
    results, ns, seeds, table, ci = bon_sweep(ctx, pickers, groups, correct, answers, f" ({what})")
    pool = min(len(v) for v in groups.values())
    notes = [f"candidates {fname} (sha256 {sha[:12]}): {len(groups)} questions, pool of {pool} candidates each; "
             "N drawn without replacement per seed"]
    if arms:
        notes += ["PRM arms: " + "; ".join(f"{a} = {cfg.released.arms[a].prm} "
                                           f"({prm_source(cfg, str(cfg.released.arms[a].prm))}) on "
                                           f"{cfg.released.arms[a].steps} steps" for a in arms),
                  "PRM arms aggregate step scores with min (paper default); `_mean` / `_last` are the other "
                  "aggregations"]
    else:
        notes += ["PRM arms skipped: the released PRMs (7B) are scored on the `paper` profile only"]
    ctx.table("bon", f"Best-of-N accuracy (%) with {what} on {cfg.task.name}, mean over {len(seeds)} seeds "
              "[bootstrap 95% CI over questions]", table, notes=notes)
    ctx.csv("bon_long", figures.bon_rows(results, seeds), columns=figures.BON_COLUMNS)
    ctx.csv("bon_ci", ci, columns=figures.CI_COLUMNS)
    # provenance: which candidates file and which PRM weights (hub id or local folder) the record used
    fps = {a: prm_fingerprint(cfg, str(cfg.released.arms[a].prm)) for a in arms}
    ctx.record.extra["released"] = {"candidates_sha256": sha, "prms": fps}
