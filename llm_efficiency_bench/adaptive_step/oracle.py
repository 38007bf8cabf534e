"""The diagnosis on the synthetic task: the exact step checker as verifier, as annotator, as PRM labels.

The synthetic task's steps are `a op b = c` lines taken from the question, so each can be checked exactly
(`checkers.synthetic_*`). Two oracles: `question` reads the question (a step must be the question's own step:
right operands, right result, in order), `arithmetic` checks the arithmetic and the chaining only (a step
that copies a wrong number from the question but computes it right passes):

* the `oracle` Best-of-N arm scores a candidate 1 when the question-reading oracle accepts every step and
  the answer line (never comparing with the gold answer itself): the upper bound of what a perfect process
  verifier gives; `oracle_arith` is the arithmetic-only verifier;
* the oracle step labels (`labels.oracle_labels`) against the Monte-Carlo labels (§3.2): agreement, false
  positive rate (MC says good where a step is wrong) and false negative rate (MC says bad where the steps so
  far are right), hard and soft (soft >= 0.5), on the interior markers (the ones the rollouts label), for
  both oracles;
* `oracle_prm`: a PRM trained on the oracle labels with the same model, data and budget as the MC-label PRM.
  If it separates candidates where the MC-label PRM does not, the labels are the problem.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from llm_efficiency_bench.adaptive_step import checkers, recipe_selection, stage_settings
from llm_efficiency_bench.adaptive_step.labels import oracle_labels
from llm_efficiency_bench.adaptive_step.pipeline import PipelineData, test_scores
from llm_efficiency_bench.adaptive_step.prm import train_prm
from llm_efficiency_bench.adaptive_step.stage import Log
from llm_efficiency_bench.adaptive_step.stage_inputs import PrmInputs, Validator
from llm_efficiency_bench.core.cache import config_key


def oracle_solution_scores(data: PipelineData, reads_question: bool = True) -> list[list[float]]:
    """Per test candidate, one "step score": 1.0 when the exact checker accepts the whole solution."""
    test = data.test
    return [[float(checkers.synthetic_solution_ok(data.policy.decode(r["ids"]),
                                                  test.probs[r["q"]].solution if reads_question else None))]
            for r in test.rows]


def label_confusion(mc: Sequence[Sequence[float]], oracle: Sequence[Sequence[int]], threshold: float = 0.5
                    ) -> dict[str, float]:
    """MC step labels vs oracle step labels on the interior markers (the closing marker is left out: its MC
    label is the solution's gold correctness, not a rollout estimate).

    Args:
        mc: per solution, the MC label of each marker (hard 0/1 or soft fraction), closing one last.
        oracle: per solution, the oracle label of each marker, closing one last.
        threshold: an MC label >= threshold counts as "good" (soft labels; hard labels are 0 / 1).

    Returns:
        markers, agreement, fp_rate = P(MC good | oracle bad), fn_rate = P(MC bad | oracle good),
        oracle_good and mc_good rates.
    """
    m = np.array([v >= threshold for lab in mc for v in list(lab)[:-1]], dtype=bool)       # (markers,)
    o = np.array([bool(v) for lab in oracle for v in list(lab)[:-1]], dtype=bool)          # (markers,)
    if len(m) != len(o):
        raise ValueError("MC and oracle labels have different marker counts")
    n = len(m)
    rate = lambda x: float(np.mean(x)) if len(x) else float("nan")  # noqa: E731
    return {"markers": float(n), "agreement": rate(m == o), "fp_rate": rate(m[~o]), "fn_rate": rate(~m[o]),
            "oracle_good": rate(o), "mc_good": rate(m)}


def label_quality(data: PipelineData) -> tuple[list[dict[str, Any]], dict[str, list[list[int]]]]:
    """Oracle vs MC labels for every split with MC labels: table rows, and the question-reading oracle's
    labels per split (what `oracle_prm` trains on)."""
    rows, oracle = [], {}
    pol, prm = data.policy, data.prm
    for split, lab in data.labels.items():
        bounds = data.division.prm[split]
        oracle[split] = oracle_labels(pol, prm.rows, bounds, prm.probs)
        arith = oracle_labels(pol, prm.rows, bounds)
        for name, ref in (("question", oracle[split]), ("arithmetic", arith)):
            for kind in ("hard", "soft"):
                stats = label_confusion([x[kind] for x in lab.labels], ref)
                rows.append({"split": split, "oracle": name, "labels": kind, **stats})
    return rows, oracle


def oracle_prm(cfg: Any, data: PipelineData, split: str, oracle: list[list[int]], log: Log,
               recipe: dict[str, Any] | None = None, validator: Validator | None = None) -> tuple[Any, str]:
    """`prm_oracle`: the MC-label PRM's recipe (same model, examples, markers, `recipe`) on the oracle labels of
    split `split`. Returns (the PRM, its stage key)."""
    key = config_key(["oracle", data.division.key, split, oracle])  # by content: a changed checker retrains
    inputs = PrmInputs(name="oracle", policy=data.policy.key, labels=key,
                       recipe=recipe if recipe is not None else stage_settings.prm_recipe(cfg), validator=validator)
    return train_prm(inputs, data.policy, data.prm, data.division.prm[split], oracle,
                     stage_settings.run_options(cfg), log)


def add_oracle(ctx: Any, data: PipelineData, scores: dict[str, list[list[float]]],
               recipe: dict[str, Any] | None = None, v: recipe_selection.ValData | None = None,
               val: dict[str, Any] | None = None) -> None:
    """On a task with exact steps: the oracle arms and oracle PRM into `scores` (and their validation scores
    into `val`), the label table into the record."""
    cfg = ctx.cfg
    ocfg = cfg.get("oracle") or {}
    if not getattr(data.policy.task, "has_oracle", False) or not ocfg:
        return
    val = val if val is not None else {}
    if ocfg.get("arm", True):
        scores["oracle"] = oracle_solution_scores(data)
        scores["oracle_arith"] = oracle_solution_scores(data, reads_question=False)
        if v is not None:
            texts = [data.policy.decode(r["ids"]) for r in v.rows]
            val["oracle"] = ([[float(checkers.synthetic_solution_ok(t, v.samples.probs[r["q"]].solution))]
                              for t, r in zip(texts, v.rows)], None)
            val["oracle_arith"] = ([[float(checkers.synthetic_solution_ok(t))] for t in texts], None)
    if not (ocfg.get("labels", True) or ocfg.get("prm", True)):
        return
    rows, oracle = label_quality(data)
    for r in rows:
        tag = "" if r["oracle"] == "question" else ".arith"
        for what in ("agreement", "fp_rate", "fn_rate"):
            ctx.metric(f"labels{tag}.{r['split']}.{r['labels']}.{what}", 100 * r[what], "%", "none",
                       note=f"MC vs {r['oracle']} oracle step labels, {int(r['markers'])} interior markers"
                            + (" (soft >= 0.5)" if r["labels"] == "soft" else ""))
    ctx.table("label_quality", "Monte-Carlo step labels vs the exact oracle labels (PRM data)", rows, notes=[
        "interior markers only (the closing marker's MC label is the final answer's correctness)",
        "fp_rate = P(MC good | oracle bad); fn_rate = P(MC bad | oracle good); soft labels count as good at >= 0.5",
        "oracle `question`: the prefix is on the question's own chain (right operands and results); "
        "`arithmetic`: it can still be completed into exact, chained `a op b = c` steps, operands unchecked "
        "(checkers.synthetic_prefix_ok)"], digits=3)
    split = str(ocfg.get("split", "confidence"))
    if ocfg.get("prm", True) and split in oracle:
        prm, key = oracle_prm(cfg, data, split, oracle[split], ctx.log, recipe,
                              recipe_selection.auc_validator(cfg, data, v, split) if v is not None else None)
        scores["oracle_prm"] = test_scores(cfg, data, prm, key, split, ctx.log)
        if v is not None:
            val["oracle_prm"] = (recipe_selection.val_scores(cfg, data, v, prm, key, split, ctx.log), split)
