"""Best-of-N selection (paper §4.2, Figs. 4-5): pickers and the sweep over arms, N and seeds.

Shared by the miniature (`experiments.bon`) and the released-PRM path (`released.bon_released`), so both
report the same arms the same way: `bon_acc.<arm>.<N>` in percent, mean over seeds with a bootstrap 95% interval
over questions, with the baseline arms
`majority` (self-consistency), `random` (the first drawn candidate) and `pass_at_n` (any drawn candidate
right: the ceiling of every selector).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from llm_efficiency_bench.core.experiment import setting
from llm_efficiency_bench.core.validate import ListOf, pos_int

Pick = Callable[[list[int]], int]


@dataclass
class BestOfNSettings:
    """The Best-of-N sweep's settings (`experiment.*` of `bon` and `bon_released`); defaults: the paper's."""

    n: list[int] = setting([1, 2, 4, 8, 16, 32, 64], ListOf(pos_int(hi=1 << 16), unique=True),
                           "N candidates drawn per question (the paper: 4 to 64; 1 and 2 added); at most the pool")
    seeds: int = setting(3, pos_int(hi=1000), "seeded draws of the N candidates, averaged (seed, seed + 1, ...)")


def per_question(groups: dict[int, list[int]], pick: Pick, correct: Sequence[bool], n: int, seed: int) -> list[bool]:
    """Per question (sorted), whether the candidate `pick`ed from `n` drawn (seeded) from its pool is right."""
    rng = random.Random(seed)
    out = []
    for q, idx in sorted(groups.items()):
        cand = rng.sample(idx, min(n, len(idx)))
        out.append(bool(correct[pick(cand)]))
    return out


def best_of_n(groups: dict[int, list[int]], pick: Pick, correct: Sequence[bool], n: int, seed: int) -> float:
    """Accuracy when each question's answer is `pick`ed from `n` candidates drawn (seeded) from its pool."""
    return float(np.mean(per_question(groups, pick, correct, n, seed)))


def bootstrap_ci(per_q: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Percentile bootstrap over questions of the mean of `per_q` (per-question accuracy, averaged over seeds).

    Returns:
        (lower, upper, bootstrap standard error), in the units of `per_q`.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_q), size=(resamples, len(per_q)))  # (resamples, questions)
    means = per_q[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a)), float(means.std(ddof=1))


def majority_pick(answers: Sequence[str | None], rng: random.Random) -> Pick:
    """Self-consistency: the candidate whose final answer is most frequent (ties: first drawn)."""
    def pick(cand: list[int]) -> int:
        counts: dict[str | None, int] = {}
        for i in cand:
            counts[answers[i]] = counts.get(answers[i], 0) + 1
        best = max(counts.values())
        for i in cand:
            if counts[answers[i]] == best and answers[i] is not None:
                return i
        return cand[0]
    return pick


def score_pick(vals: Sequence[float]) -> Pick:
    """Best-of-N selector: the drawn candidate with the highest score (ties: the first drawn)."""
    return lambda cand: max(cand, key=lambda i: (vals[i], -cand.index(i)))


def groups_of(question_of: Sequence[int]) -> dict[int, list[int]]:
    """Question -> indices of its candidates, from each candidate's question index."""
    groups: dict[int, list[int]] = {}
    for i, q in enumerate(question_of):
        groups.setdefault(q, []).append(i)
    return groups


def bon_sweep(ctx: Any, pickers: dict[str, Pick], groups: dict[int, list[int]], correct: list[bool],
              answers: list[Any], note: str) -> tuple[dict[str, dict[int, list[float]]], list[int], list[int],
                                                       list[dict[str, Any]], list[dict[str, Any]]]:
    """Best-of-N for every arm, N and seed; writes `bon_acc.<arm>.<N>` with a bootstrap interval.

    Args:
        ctx: the run context (`cfg.experiment.n`, `cfg.experiment.seeds`, `cfg.seed`; metrics go there).
        pickers: arm name -> function choosing one candidate index from a list of drawn candidates; the
            baseline arms `majority`, `random` and `pass_at_n` are added here.
        groups: question -> indices of its candidate pool.
        correct: per candidate, whether its final answer is right.
        answers: per candidate, its answer key for majority voting (None never wins).
        note: appended to each metric's note.

    Returns:
        (results[arm][N] = accuracy per seed in %, the Ns run, the seeds, table rows "mean [lo, hi]" per arm,
        interval rows (arm, n, mean, ci_lo, ci_hi, se) for `bon_ci.csv`). The interval is a percentile
        bootstrap over questions of the per-question accuracy averaged over seeds: it covers the question
        sample, which dominates here, not only the draw of N candidates.
    """
    cfg = ctx.cfg
    pickers = {**pickers, "majority": majority_pick(answers, random.Random(0)),
               "random": lambda cand: cand[0],  # candidates are drawn in random order
               "pass_at_n": lambda cand: next((i for i in cand if correct[i]), cand[0])}
    ns = [int(n) for n in cfg.experiment.n if int(n) <= min(len(v) for v in groups.values())]
    seeds = [int(cfg.seed) + s for s in range(int(cfg.experiment.seeds))]
    results: dict[str, dict[int, list[float]]] = {arm: {} for arm in pickers}
    ci_rows: list[dict[str, Any]] = []
    for arm, pick in pickers.items():
        for n in ns:
            pq = np.array([per_question(groups, pick, correct, n, seed) for seed in seeds], dtype=float)  # (S, Q)
            accs = [100 * float(x) for x in pq.mean(axis=1)]
            results[arm][n] = accs
            lo, hi, se = bootstrap_ci(100 * pq.mean(axis=0), seed=int(cfg.seed))
            ci_rows.append({"arm": arm, "n": n, "mean": float(np.mean(accs)), "ci_lo": lo, "ci_hi": hi, "se": se})
            ctx.metric(f"bon_acc.{arm}.{n}", float(np.mean(accs)), "%", "higher",
                       note=f"Best-of-{n}, {len(groups)} questions, mean of {len(seeds)} seeds, "
                            f"95% CI [{lo:.1f}, {hi:.1f}] (bootstrap over questions){note}", stderr=se)
    by = {(r["arm"], r["n"]): r for r in ci_rows}
    rows = [{"arm": arm, **{f"N={n}": f"{by[arm, n]['mean']:.1f} [{by[arm, n]['ci_lo']:.1f}, {by[arm, n]['ci_hi']:.1f}]"
                            for n in ns}} for arm in results]
    return results, ns, seeds, rows, ci_rows
