"""Issue 11's diagnosis on the synthetic task: the exact step checker as verifier, as annotator, as PRM labels.

The synthetic task's steps are `a op b = c` lines, so each can be checked exactly (`checkers.synthetic_*`):

* the `oracle` Best-of-N arm scores a candidate 1 when all its steps are exact and chained and its answer
  line is consistent with them (a verifier that reads the steps, never the gold answer): the upper bound of
  what a perfect process verifier gives;
* the oracle step labels (`labels.oracle_labels`) against the Monte-Carlo labels (§3.2): agreement, false
  positive rate (MC says good where a step is wrong) and false negative rate (MC says bad where the steps so
  far are right), hard and soft (soft >= 0.5), on the interior markers (the ones the rollouts label);
* `oracle_prm`: a PRM trained on the oracle labels with the same model, data and budget as the MC-label PRM.
  If it separates candidates where the MC-label PRM does not, the labels are the problem.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from bench.adaptive_step import checkers as C
from bench.adaptive_step.labels import oracle_labels
from bench.adaptive_step.pipeline import Built
from bench.adaptive_step.prm import score_candidates, train_prm
from bench.adaptive_step.stage import Log
from bench.core.cache import config_key


def oracle_solution_scores(b: Built) -> list[list[float]]:
    """Per test candidate, one "step score": 1.0 when the exact checker accepts the whole solution."""
    return [[float(C.synthetic_solution_ok(b.pol.decode(r["ids"])))] for r in b.test_rows]


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


def label_quality(b: Built) -> tuple[list[dict[str, Any]], dict[str, list[list[int]]]]:
    """Oracle vs MC labels for every split with MC labels: table rows, and the oracle labels per split."""
    rows, oracle = [], {}
    for split, lab in b.labels.items():
        oracle[split] = oracle_labels(b.pol, b.prm_rows, b.division["prm"][split])
        for kind in ("hard", "soft"):
            stats = label_confusion([x[kind] for x in lab["labels"]], oracle[split])
            rows.append({"split": split, "labels": kind, **stats})
    return rows, oracle


def oracle_prm_scores(cfg: Any, b: Built, split: str, oracle: list[list[int]], log: Log) -> list[list[float]]:
    """`prm_oracle`: the MC-label PRM's recipe (same model, examples, markers, `prm` settings) on the oracle
    labels of split `split`; then its step scores of every test candidate."""
    key = config_key(["oracle", b.keys["division"], split, oracle])  # by content: a changed checker retrains
    prm, prm_key = train_prm(cfg, b.pol, b.prm_probs, b.prm_rows, b.division["prm"][split], oracle, "oracle",
                             key, log)
    return score_candidates(cfg, b.pol, prm, prm_key, b.test_probs, b.test_rows, b.division["test"][split], False,
                            b.keys["samples_test"], log)


def add_oracle(ctx: Any, b: Built, scores: dict[str, list[list[float]]]) -> None:
    """On a task with exact steps: the oracle arm and oracle PRM into `scores`, the label table into the record."""
    cfg = ctx.cfg
    ocfg = cfg.get("oracle") or {}
    if not getattr(b.pol.task, "has_oracle", False) or not ocfg:
        return
    if ocfg.get("arm", True):
        scores["oracle"] = oracle_solution_scores(b)
    if not (ocfg.get("labels", True) or ocfg.get("prm", True)):
        return
    rows, oracle = label_quality(b)
    for r in rows:
        for what in ("agreement", "fp_rate", "fn_rate"):
            ctx.metric(f"labels.{r['split']}.{r['labels']}.{what}", 100 * r[what], "%", "none",
                       note=f"MC vs oracle step labels, {int(r['markers'])} interior markers"
                            + (" (soft >= 0.5)" if r["labels"] == "soft" else ""))
    ctx.table("label_quality", "Monte-Carlo step labels vs the exact oracle labels (PRM data)", rows, notes=[
        "interior markers only (the closing marker's MC label is the final answer's correctness)",
        "fp_rate = P(MC good | oracle bad); fn_rate = P(MC bad | oracle good); soft labels count as good at >= 0.5",
        "oracle label of a prefix: it can still be completed into exact, chained `a op b = c` steps "
        "(checkers.synthetic_prefix_ok)"], digits=3)
    split = str(ocfg.get("split", "confidence"))
    if ocfg.get("prm", True) and split in oracle:
        scores["oracle_prm"] = oracle_prm_scores(cfg, b, split, oracle[split], ctx.log)
