"""Pipeline pieces without models: stage cache, Best-of-N selection, majority vote, config composition."""

from __future__ import annotations

import random

import pytest

from llm_efficiency_bench.adaptive_step import bon
from llm_efficiency_bench.adaptive_step.stage import RunOptions, stage
from llm_efficiency_bench.adaptive_step.tasks import make_task



def test_stage_cache_keyed_by_settings_and_rerun(tmp_path, monkeypatch):
    from llm_efficiency_bench.core.cache import save_atomic

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    run = RunOptions()
    a = stage(run, "labels_confidence", {"K": 4})
    assert not a.done
    assert a.dir == tmp_path / "adaptive_step" / f"labels_confidence-{a.key}"   # the cache layout of the stage folders
    a.get_or_build(lambda work: save_atomic(work / "x.pt", [1, 2]) or {"n": 2})
    b = stage(run, "labels_confidence", {"K": 4})
    assert b.dir == a.dir and b.done and b.load("x.pt") == [1, 2] and b.info()["n"] == 2
    assert stage(run, "labels_confidence", {"K": 8}).dir != a.dir      # other settings, other folder
    c = stage(RunOptions(rerun=frozenset({"labels_confidence"})), "labels_confidence", {"K": 4})
    assert not c.done                                                  # rerun removes that stage's output


def test_best_of_n_arms():
    # 3 questions x 4 candidates; candidate correctness and a scorer that knows the truth
    correct = [False, True, False, False,  False, False, False, False,  True, True, True, True]
    groups = {0: [0, 1, 2, 3], 1: [4, 5, 6, 7], 2: [8, 9, 10, 11]}
    oracle = lambda cand: next((i for i in cand if correct[i]), cand[0])  # noqa: E731
    worst = lambda cand: next((i for i in cand if not correct[i]), cand[0])  # noqa: E731
    assert bon.best_of_n(groups, oracle, correct, 4, seed=0) == 2 / 3
    assert bon.best_of_n(groups, worst, correct, 4, seed=0) == 1 / 3
    # N = 1: every selector sees one candidate, so all arms coincide for the same seed
    assert bon.best_of_n(groups, oracle, correct, 1, seed=5) == bon.best_of_n(groups, worst, correct, 1, seed=5)


def test_majority_vote_picks_most_frequent_answer():
    answers = ["3", "5", "5", None, "3", "5"]
    pick = bon.majority_pick(answers, random.Random(0))
    assert answers[pick([0, 1, 2, 3, 4, 5])] == "5"
    assert pick([3, 0]) == 0                 # a missing answer never wins over a real one
    assert pick([3]) == 3


@pytest.mark.e2e
def test_configs_compose_for_every_profile_and_experiment(tmp_path):
    from llm_efficiency_bench.adaptive_step import stage_settings
    from llm_efficiency_bench.core.errors import ConfigError
    from llm_efficiency_bench.core.validate import validate
    from tests.conftest import compose

    for prof in ("smoke", "cpu", "cpu_code", "paper"):
        for exp in ("bon", "tvd", "cost", "greedy", "bon_released"):
            over = [f"experiment={exp}", f"profile={prof}", f"results_dir={tmp_path}"]
            if prof == "paper" and exp in ("bon", "tvd", "cost"):  # the miniature's pipeline: 7B policies
                with pytest.raises(ConfigError, match="on the `paper` profile is not implemented") as e:
                    compose("adaptive_step", over)
                assert e.value.setting == "profile"
                continue
            cfg = compose("adaptive_step", over)
            validate("adaptive_step", cfg)
            assert cfg.experiment.name == exp and cfg.profile.name == prof and cfg.paper == "adaptive_step"
            assert stage_settings.labels_inputs(cfg, "d", "confidence").K >= 1
    smoke = compose("adaptive_step", ["experiment=bon", "profile=smoke"])
    assert list(smoke.experiment.n) == [1, 2, 4, 8, 16] and smoke.model.source == "suite_trained"


def test_synthetic_problem_splits_are_disjoint():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"task": {"name": "synthetic", "seed": 0,
                                     "difficulty": {"min_ops": 2, "max_ops": 3, "max_start": 20, "max_add": 20,
                                                    "max_mul": 3}}})
    task = make_task(cfg)
    tr = {p.question for p in task.load("policy_train", 2000)}
    te = [p.question for p in task.load("test", 200)]
    # templated questions can collide by chance; most test questions must be unseen in training
    assert sum(q in tr for q in te) < 0.2 * len(te)


def test_labels_entry_loads_cost_under_the_bench_module_path(tmp_path, monkeypatch):
    """A labels entry whose `Cost` was pickled as `bench.adaptive_step.steps.Cost` loads as `steps.Cost`; other
    classes stay refused."""
    import dataclasses
    import sys
    import types

    import pytest
    import torch

    from llm_efficiency_bench.adaptive_step import labels, steps
    from llm_efficiency_bench.core.cache import UnsafeFile, load_plain

    fake = types.ModuleType("bench.adaptive_step.steps")
    cost_cls = dataclasses.make_dataclass("Cost", [(f.name, f.type, f) for f in dataclasses.fields(steps.Cost)])
    cost_cls.__module__ = fake.__name__
    fake.Cost = cost_cls
    other = type("Other", (), {"__module__": fake.__name__})
    fake.Other = other
    for name in ("bench", "bench.adaptive_step", "bench.adaptive_step.steps"):
        monkeypatch.setitem(sys.modules, name, fake)
    cost = cost_cls()
    cost.rollouts, cost.per_solution = 12, [3]
    torch.save({"labels": [{"hard": [1], "soft": [1.0]}], "cost": cost}, tmp_path / "labels.pt")
    torch.save({"x": other()}, tmp_path / "other.pt")
    for name in ("bench", "bench.adaptive_step", "bench.adaptive_step.steps"):
        monkeypatch.delitem(sys.modules, name)
    got = load_plain(tmp_path / "labels.pt", labels._STATE_CLASSES)
    assert isinstance(got["cost"], steps.Cost) and got["cost"].rollouts == 12 and got["cost"].per_solution == [3]
    with pytest.raises(UnsafeFile):
        load_plain(tmp_path / "other.pt", labels._STATE_CLASSES)
