"""Micro-benchmark of AdaptiveStep's step division (threshold + boundaries + markers), `make bench`."""

from __future__ import annotations

import random

import numpy as np
import pytest

from llm_efficiency_bench.adaptive_step import steps


def _data(n_solutions: int = 512, length: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    confs = [rng.beta(5, 1, size=length) for _ in range(n_solutions)]  # mostly confident, a low tail
    ids = [list(range(length))] * n_solutions
    return confs, ids


@pytest.mark.benchmark
def test_confidence_split_throughput(benchmark):
    confs, ids = _data()

    def run():
        tau = steps.global_threshold(confs, 2.0)
        return [steps.insert_markers(i, steps.confidence_boundaries(c, tau), -1) for c, i in zip(confs, ids)]

    out = benchmark(run)
    n_markers = sum(len(p) for _, p in out)
    # ~2% of tokens become split points, plus one closing marker per solution
    assert 0.01 * 512 * 200 < n_markers - 512 < 0.03 * 512 * 200


@pytest.mark.benchmark
def test_newline_and_random_split_throughput(benchmark):
    texts = (["1", "2", " +", " 3", " =", " 15", "\n"] * 30)
    rng = random.Random(0)

    def run():
        nb = steps.newline_boundaries(texts)
        return nb, steps.random_boundaries(len(texts), len(nb), rng)

    nb, rb = benchmark(run)
    assert len(nb) == 29 and len(rb) == 29
