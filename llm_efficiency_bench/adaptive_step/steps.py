"""AdaptiveStep's method as pure functions: confidence, threshold, step division, rollout labels, cost.

Paper §3 (arXiv 2502.13943): the confidence of a generated token is the probability the policy gave it
(§3.1); one global threshold tau over the pooled confidences of all sampled tokens; a step boundary is placed
right *before* each token whose confidence is below tau, plus a closing marker at the end (§3.1, Fig. 2).
Labels come from Monte-Carlo rollouts from each step prefix (§3.2, Math-Shepherd's hard / soft estimation).
Baselines: rule-based newline steps (Math-Shepherd) and random split points with the same count (Table 3).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

SPLITS = ("confidence", "newline", "random")


def token_confidences(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Probability of each sampled token under the policy (§3.1 "confidence").

    Args:
        logits: (T, V) next-token logits at the positions that produced `tokens` (untempered).
        tokens: (T,) the sampled token ids.

    Returns:
        (T,) float32 probabilities p(token_t | question, prefix_<t).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (T, V)
    return logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1).exp()


def global_threshold(confidences: Sequence[Sequence[float]] | Sequence[np.ndarray], percentile: float = 2.0) -> float:
    """One threshold tau = the `percentile`-th percentile of all pooled token confidences (§3.1).

    Args:
        confidences: per-solution confidence sequences (any lengths).
        percentile: percent of tokens that fall below tau (paper: ~2%).
    """
    pooled = np.concatenate([np.asarray(c, dtype=np.float64) for c in confidences if len(c)])
    if pooled.size == 0:
        raise ValueError("no confidences to pool")
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    return float(np.percentile(pooled, percentile))


def confidence_boundaries(conf: Sequence[float] | np.ndarray, tau: float) -> list[int]:
    """Indices i (>= 1) such that a marker goes right before token i because conf[i] < tau.

    A low-confidence first token gives no boundary: the step before it would be empty (its decision is then
    judged by the next marker). Boundaries may fall mid-word, as in the paper.
    """
    c = np.asarray(conf, dtype=np.float64)
    return [int(i) for i in np.nonzero(c < tau)[0] if i >= 1]


def newline_boundaries(token_texts: Sequence[str]) -> list[int]:
    """Rule-based steps (Math-Shepherd): a boundary before the first token after each newline-bearing token.

    Args:
        token_texts: decoded text of each generated token.
    """
    # a run of newline tokens gives one boundary, after its last newline (empty steps are merged)
    return [i for i in range(1, len(token_texts)) if "\n" in token_texts[i - 1] and "\n" not in token_texts[i]]


def random_boundaries(n_tokens: int, count: int, rng: random.Random) -> list[int]:
    """`count` distinct random boundaries in [1, n_tokens - 1] (control arm, Table 3)."""
    pool = list(range(1, max(1, n_tokens)))
    return sorted(rng.sample(pool, min(count, len(pool))))


def boundaries_for(split: str, conf: Sequence[float], token_texts: Sequence[str], tau: float,
                   rng: random.Random) -> list[int]:
    """Boundaries of one solution under `split` (`random` uses the confidence count of this solution)."""
    if split == "confidence":
        return confidence_boundaries(conf, tau)
    if split == "newline":
        return newline_boundaries(token_texts)
    if split == "random":
        return random_boundaries(len(token_texts), len(confidence_boundaries(conf, tau)), rng)
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def insert_markers(ids: Sequence[int], boundaries: Sequence[int], marker_id: int) -> tuple[list[int], list[int]]:
    """Solution ids with a marker before each boundary and one closing marker at the end.

    Returns:
        (ids_with_markers, marker_positions) where positions index into the new list; the last position is
        the closing marker. Each marker scores the step that ends right before it.
    """
    bset = sorted(set(int(b) for b in boundaries if 0 < b < len(ids)))
    out: list[int] = []
    pos: list[int] = []
    j = 0
    for i, t in enumerate(ids):
        if j < len(bset) and bset[j] == i:
            pos.append(len(out))
            out.append(marker_id)
            j += 1
        out.append(int(t))
    pos.append(len(out))
    out.append(marker_id)
    return out, pos


def step_texts(token_texts: Sequence[str], boundaries: Sequence[int]) -> list[str]:
    """The text of each step (the pieces between boundaries; the last runs to the end)."""
    cuts = [0, *sorted(set(b for b in boundaries if 0 < b < len(token_texts))), len(token_texts)]
    return ["".join(token_texts[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def mc_labels(outcomes: Sequence[Sequence[bool]]) -> tuple[list[int], list[float]]:
    """Math-Shepherd estimation from rollouts: hard = any rollout correct, soft = fraction correct (§3.2).

    Args:
        outcomes: per step, the correctness of each of its K rollouts.
    """
    hard = [int(any(o)) for o in outcomes]
    soft = [float(sum(o)) / len(o) if len(o) else 0.0 for o in outcomes]
    return hard, soft


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """Solution score from step scores: `min` (paper default), `mean`, `last` (or `max`)."""
    if not len(step_scores):
        raise ValueError("no step scores")
    s = np.asarray(step_scores, dtype=np.float64)
    if how == "min":
        return float(s.min())
    if how == "mean":
        return float(s.mean())
    if how == "last":
        return float(s[-1])
    if how == "max":
        return float(s.max())
    raise ValueError(f"unknown aggregation {how!r}")


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties 1/2.

    Returns NaN when one class is empty.
    """
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(np.asarray(scores, dtype=np.float64))  # average ranks: ties count 1/2
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def within_group_auc(scores: Sequence[float], labels: Sequence[bool], groups: dict[int, list[int]]) -> tuple[float, int]:
    """Mean AUC over the groups (questions) that have both correct and wrong candidates.

    Best-of-N only ever compares candidates of one question, so this (not the pooled AUC, which also
    rewards knowing which questions are easy) is what decides whether a verifier helps.

    Returns:
        (mean AUC, number of groups that had both classes).
    """
    vals = [auc([scores[i] for i in idx], [labels[i] for i in idx]) for idx in groups.values()]
    vals = [v for v in vals if v == v]  # drop NaN: groups with one class only
    return (float(np.mean(vals)) if vals else float("nan")), len(vals)


@dataclass
class Cost:
    """Construction cost of one split's PRM data (claim 3: fewer steps -> fewer rollouts)."""

    solutions: int = 0
    markers: int = 0           # all markers, closing markers included
    rollouts: int = 0          # Monte-Carlo rollouts run (K per non-closing marker)
    tokens: int = 0            # tokens generated by those rollouts
    seconds: float = 0.0       # wall time of the rollouts
    per_solution: list[int] = field(default_factory=list)

    def add(self, n_markers: int, rollouts: int, tokens: int, seconds: float) -> None:
        self.solutions += 1
        self.markers += n_markers
        self.rollouts += rollouts
        self.tokens += tokens
        self.seconds += seconds
        self.per_solution.append(n_markers)

    @property
    def steps_per_solution(self) -> float:
        return self.markers / max(1, self.solutions)


_OPS = set("+-*/=×÷<>^%")


def token_type(text: str) -> str:
    """Coarse type of a token for the split-point analysis (paper §5 / Fig. 6: digits and operators)."""
    t = text.strip()
    if "\n" in text and not t:
        return "newline"
    if not t:
        return "space"
    if t.startswith("####") or t == "#":
        return "answer_mark"
    if re.fullmatch(r"[\d.,]+", t):
        return "digit"
    if all(ch in _OPS for ch in t):
        return "operator"
    if re.fullmatch(r"[A-Za-z]+", t):
        return "word"
    if re.search(r"\d", t):
        return "digit"
    return "punct"
