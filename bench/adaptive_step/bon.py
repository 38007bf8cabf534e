"""Best-of-N selection (paper §4.2, Figs. 4-5): pickers and the sweep over arms, N and seeds.

Shared by the miniature (`experiments.bon`) and the released-PRM path (`released.bon_released`), so both
report the same arms the same way: `bon_acc.<arm>.<N>` in percent, mean over seeds, with the baseline arms
`majority` (self-consistency), `random` (the first drawn candidate) and `pass_at_n` (any drawn candidate
right: the ceiling of every selector).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import numpy as np

Pick = Callable[[list[int]], int]


def best_of_n(groups: dict[int, list[int]], pick: Pick, correct: Sequence[bool], n: int, seed: int) -> float:
    """Accuracy when each question's answer is `pick`ed from `n` candidates drawn (seeded) from its pool."""
    rng = random.Random(seed)
    acc = []
    for q, idx in sorted(groups.items()):
        cand = rng.sample(idx, min(n, len(idx)))
        acc.append(bool(correct[pick(cand)]))
    return float(np.mean(acc))


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
                                                       list[dict[str, Any]]]:
    """Best-of-N for every arm, N and seed; writes `bon_acc.<arm>.<N>`.

    Args:
        ctx: the run context (`cfg.experiment.n`, `cfg.experiment.seeds`, `cfg.seed`; metrics go there).
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
    pickers = {**pickers, "majority": majority_pick(answers, random.Random(0)),
               "random": lambda cand: cand[0],  # candidates are drawn in random order
               "pass_at_n": lambda cand: next((i for i in cand if correct[i]), cand[0])}
    ns = [int(n) for n in cfg.experiment.n if int(n) <= min(len(v) for v in groups.values())]
    seeds = [int(cfg.seed) + s for s in range(int(cfg.experiment.seeds))]
    results: dict[str, dict[int, list[float]]] = {arm: {} for arm in pickers}
    for arm, pick in pickers.items():
        for n in ns:
            accs = [100 * best_of_n(groups, pick, correct, n, seed) for seed in seeds]
            results[arm][n] = accs
            ctx.metric(f"bon_acc.{arm}.{n}", float(np.mean(accs)), "%", "higher",
                       note=f"Best-of-{n}, {len(groups)} questions, mean of {len(seeds)} seeds{note}",
                       stderr=float(np.std(accs, ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else None)
    rows = [{"arm": arm, **{f"N={n}": f"{np.mean(v[n]):.1f} ± {np.std(v[n], ddof=1) if len(v[n]) > 1 else 0:.1f}"
                            for n in ns}} for arm, v in results.items()]
    return results, ns, seeds, rows
