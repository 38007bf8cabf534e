"""AdaptiveStep pipeline: the cached stages chained (paper §3, Fig. 2).

Stages and their modules (each a build-once cache entry `cache_dir()/adaptive_step/<stage>-<key>/`, keyed by
the settings that determine it and the keys of its inputs, so changing a setting reruns only what depends on
it; `stage.py`):

1. `policy`            policy.py    the policy model (tiny Llama trained by the suite, or a pretrained model)
                                    and its greedy accuracy on the test questions.
2. `samples_<split>`   samples.py   N sampled solutions per question with each token's confidence.
3. `division`          samples.py   global threshold tau; step boundaries per solution and split rule.
4. `labels_<split>`    labels.py    K Monte-Carlo rollouts per step prefix; hard / soft labels; cost.
5. `prm_<name>`        prm.py       a PRM per split (label-token cross-entropy at the markers) and an ORM.
6. `scores`            prm.py       PRM step scores of every test candidate (Best-of-N re-aggregates them).
7. `tvd`               tvd.py       token-level value-guided decoding vs greedy.

Each stage receives its inputs (`stage_inputs.py`: the settings it reads and the keys of its upstream results)
and is keyed by exactly those; this module builds them from the run's config through `stage_settings`, so the
config stops here. Rerun one stage with `pipeline.rerun=[labels_confidence]` (its entry is removed first;
downstream stages follow from their keys). Stages that loop over questions checkpoint into the entry's
partial folder and resume after an interruption. The experiments (`experiments.py`) call `build_data`, then
the PRM stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from llm_efficiency_bench.adaptive_step import stage_settings
from llm_efficiency_bench.adaptive_step.labels import Labels, rollout_labels
from llm_efficiency_bench.adaptive_step.policy import Policy, build_policy
from llm_efficiency_bench.adaptive_step.prm import score_candidates, train_prm
from llm_efficiency_bench.adaptive_step.samples import Division, Samples, divide, sample_solutions
from llm_efficiency_bench.adaptive_step.stage import Log
from llm_efficiency_bench.adaptive_step.stage_inputs import PrmInputs, Validator


@dataclass(frozen=True)
class PipelineData:
    """Stages 1-4's results, each carrying the key downstream stages are keyed by.

    Attributes:
        policy: the policy.
        prm, test: the PRM-data and the test samples.
        division: tau and the boundaries of both sample sets per split rule.
        labels: split rule -> the MC labels of the PRM-data solutions.
    """

    policy: Policy
    prm: Samples
    test: Samples
    division: Division
    labels: dict[str, Labels]

    def stage_keys(self) -> dict[str, str]:
        """The keys this data was computed from (policy, samples, division), for the record's provenance."""
        return {"policy": self.policy.key, "samples_prm": self.prm.key, "samples_test": self.test.key,
                "division": self.division.key}


def labels_division_key(cfg: Any, sample_keys: Sequence[str]) -> str:
    """The division as the label stages see it (their `division` input: both sample sets, percentile, seed)."""
    return stage_settings.division_inputs(cfg, sample_keys).result_key()


def build_data(cfg: Any, log: Log, label_splits: Sequence[str] | None = None) -> PipelineData:
    """Stages 1-4 (each cached): policy, samples, division, MC labels of each split in `label_splits` (default
    `method.splits`)."""
    run = stage_settings.run_options(cfg)
    pol = build_policy(stage_settings.policy_inputs(cfg), run, log)
    prm = sample_solutions(stage_settings.samples_inputs(cfg, pol.key, "prm"), pol, run, log)
    test = sample_solutions(stage_settings.samples_inputs(cfg, pol.key, "test"), pol, run, log)
    div = divide(stage_settings.division_inputs(cfg, [prm.key, test.key]), pol, prm, test, run, log)
    labels = {}
    for sp in (label_splits if label_splits is not None else list(cfg.method.splits)):
        labels[sp] = rollout_labels(stage_settings.labels_inputs(cfg, div.key, sp), pol, prm, div, run, log)
    return PipelineData(pol, prm, test, div, labels)


def train_split_prm(cfg: Any, data: PipelineData, split: str, log: Log, recipe: dict[str, Any] | None = None,
                    validator: Validator | None = None) -> tuple[Any, str]:
    """Stage 5 for one split's MC labels (hard or soft, as `recipe` says; default the `prm` block).

    Returns:
        (the PRM, its stage key).
    """
    recipe = recipe if recipe is not None else stage_settings.prm_recipe(cfg)
    lab = data.labels[split]
    labels = [x[str(recipe.get("labels", "hard"))] for x in lab.labels]
    inputs = PrmInputs(name=split, policy=data.policy.key, labels=lab.key, recipe=recipe, validator=validator)
    return train_prm(inputs, data.policy, data.prm, data.division.prm[split], labels,
                     stage_settings.run_options(cfg), log)


def train_orm(cfg: Any, data: PipelineData, log: Log, recipe: dict[str, Any] | None = None,
              validator: Validator | None = None) -> tuple[Any, str]:
    """The ORM: closing marker only, labelled by the final answer (the same recipe as the PRMs); its labels are
    the PRM-data solutions' correctness, so it is keyed by their samples."""
    recipe = recipe if recipe is not None else stage_settings.prm_recipe(cfg)
    first = list(cfg.method.splits)[0]
    labels = [x["hard"] for x in data.labels[first].labels]
    inputs = PrmInputs(name="orm", policy=data.policy.key, labels=data.prm.key, recipe=recipe, validator=validator)
    return train_prm(inputs, data.policy, data.prm, data.division.prm[first], labels,
                     stage_settings.run_options(cfg), log)


def split_scores(cfg: Any, data: PipelineData, samples: Samples, bounds: Sequence[Sequence[int]], prm: Any,
                 key: str, log: Log, orm: bool = False) -> list[list[float]]:
    """Stage 6: step scores of every solution of `samples` (boundaries `bounds`) under the PRM `prm` (`key`)."""
    inputs = stage_settings.scores_inputs(cfg, key, samples.key, bounds, orm)
    return score_candidates(inputs, data.policy, prm, samples, stage_settings.run_options(cfg), log)


def test_scores(cfg: Any, data: PipelineData, prm: Any, key: str, split: str, log: Log,
                orm: bool = False) -> list[list[float]]:
    """Stage 6 on the test candidates (split `split`'s boundaries)."""
    return split_scores(cfg, data, data.test, data.division.test[split], prm, key, log, orm)
