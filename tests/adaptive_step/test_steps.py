"""Pure method functions: confidence, threshold, step division, markers, labels, aggregation, cost."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_efficiency_bench.adaptive_step import steps


def test_token_confidence_is_probability_of_sampled_token():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]])  # (T=2, V=4)
    conf = steps.token_confidences(logits, torch.tensor([2, 0]))
    assert conf[0].item() == pytest.approx(0.25)
    assert conf[1].item() == pytest.approx(np.exp(10) / (np.exp(10) + 3), rel=1e-6)


def test_global_threshold_is_percentile_of_pooled_confidences():
    confs = [np.linspace(0.01, 1.0, 100), np.linspace(0.01, 1.0, 100)]
    tau = steps.global_threshold(confs, 2.0)
    pooled = np.concatenate(confs)
    assert np.mean(pooled < tau) == pytest.approx(0.02, abs=0.011)
    assert steps.global_threshold(confs, 50.0) == pytest.approx(np.median(pooled))
    with pytest.raises(ValueError):
        steps.global_threshold(confs, 0.0)


def test_confidence_boundaries_before_low_tokens_and_markers():
    conf = [0.1, 0.9, 0.2, 0.95, 0.99, 0.05]
    b = steps.confidence_boundaries(conf, tau=0.3)
    assert b == [2, 5]  # the first token (index 0) never opens an empty step
    ids, pos = steps.insert_markers([10, 11, 12, 13, 14, 15], b, marker_id=99)
    assert ids == [10, 11, 99, 12, 13, 14, 99, 15, 99]
    assert pos == [2, 6, 8] and all(ids[p] == 99 for p in pos)
    assert len(pos) == len(b) + 1  # plus one closing marker


def test_newline_boundaries_merge_blank_lines():
    texts = ["1", " +", " 2", "\n", "\n", "3", "\n", "####", " 3"]
    assert steps.newline_boundaries(texts) == [5, 7]
    assert steps.step_texts(texts, [5, 7]) == ["1 + 2\n\n", "3\n", "#### 3"]


def test_random_boundaries_same_count_as_confidence():
    conf = [0.9, 0.1, 0.9, 0.1, 0.9, 0.9, 0.1, 0.9]
    texts = ["a"] * len(conf)
    rng = random.Random(0)
    r = steps.boundaries_for("random", conf, texts, 0.5, rng)
    assert len(r) == len(steps.confidence_boundaries(conf, 0.5)) == 3
    assert r == sorted(set(r)) and all(1 <= x < len(conf) for x in r)
    with pytest.raises(ValueError):
        steps.boundaries_for("sentences", conf, texts, 0.5, rng)


def test_mc_labels_hard_and_soft():
    hard, soft = steps.mc_labels([[False, False, True, False], [False] * 4, [True] * 4])
    assert hard == [1, 0, 1]
    assert soft == [0.25, 0.0, 1.0]


def test_aggregations():
    s = [0.9, 0.2, 0.7]
    assert steps.aggregate(s, "min") == 0.2
    assert steps.aggregate(s, "mean") == pytest.approx(0.6)
    assert steps.aggregate(s, "last") == 0.7
    with pytest.raises(ValueError):
        steps.aggregate([], "min")


def test_cost_accounting():
    c = steps.Cost()
    c.add(n_markers=3, rollouts=8, tokens=100, seconds=1.5)
    c.add(n_markers=1, rollouts=0, tokens=0, seconds=0.0)
    assert (c.solutions, c.markers, c.rollouts, c.tokens) == (2, 4, 8, 100)
    assert c.steps_per_solution == 2.0


def test_token_types():
    assert steps.token_type("7") == "digit" and steps.token_type(" 42") == "digit"
    assert steps.token_type(" +") == "operator" and steps.token_type("=") == "operator"
    assert steps.token_type("\n") == "newline" and steps.token_type(" apples") == "word"
    assert steps.token_type("####") == "answer_mark"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60), st.floats(0.01, 0.99))
def test_markers_roundtrip(conf, tau):
    ids = list(range(100, 100 + len(conf)))
    b = steps.confidence_boundaries(conf, tau)
    out, pos = steps.insert_markers(ids, b, marker_id=-1)
    assert [t for t in out if t != -1] == ids          # the solution is unchanged apart from markers
    assert len(pos) == len(b) + 1 and pos[-1] == len(out) - 1
    for p, bi in zip(pos, b):                            # each marker sits right before its low token
        assert out[p + 1] == ids[bi] and conf[bi] < tau


def test_auc_and_within_question_auc():
    from llm_efficiency_bench.adaptive_step.steps import auc, within_group_auc

    assert auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auc([0.5, 0.5], [True, False]) == 0.5          # ties count one half
    assert auc([0.3, 0.4], [True, True]) != auc([0.3, 0.4], [True, True])  # NaN: one class only
    # a score that only knows which question is easy: perfect pooled AUC, chance within each question
    scores = [0.9, 0.9, 0.1, 0.1]
    labels = [True, False, False, False]
    groups = {0: [0, 1], 1: [2, 3]}
    assert auc(scores, labels) > 0.8
    w, n = within_group_auc(scores, labels, groups)
    assert (w, n) == (0.5, 1)                             # question 1 has no correct candidate: skipped
    w, _ = within_group_auc([0.9, 0.2, 0.1, 0.1], labels, groups)
    assert w == 1.0
