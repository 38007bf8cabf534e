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

Rerun one stage with `pipeline.rerun=[labels_confidence]` (its entry is removed first; downstream stages
follow from their keys). Stages that loop over questions checkpoint into the entry's partial folder and
resume after an interruption. The experiments (`experiments.py`) call `build_data`, then the PRM stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from llm_efficiency_bench.adaptive_step.labels import rollout_labels
from llm_efficiency_bench.adaptive_step.policy import Policy, train_policy
from llm_efficiency_bench.adaptive_step.prm import score_candidates, train_prm
from llm_efficiency_bench.adaptive_step.samples import divide, sample_solutions
from llm_efficiency_bench.adaptive_step.stage import Log
from llm_efficiency_bench.adaptive_step.tasks import Problem
from llm_efficiency_bench.core.cache import config_key


@dataclass
class Built:
    """What the experiments read: everything up to the labels."""

    pol: Policy
    prm_probs: list[Problem]
    prm_rows: list[dict[str, Any]]
    test_probs: list[Problem]
    test_rows: list[dict[str, Any]]
    division: dict[str, Any]
    labels: dict[str, dict[str, Any]]
    keys: dict[str, str]

    def label_key(self, split: str, rollouts: int) -> str:
        """The key of split `split`'s MC labels as the PRM stage sees it."""
        return config_key([self.keys["division"], split, int(rollouts)])


def labels_division_key(cfg: Any, sample_keys: Sequence[str]) -> str:
    """The division as the label stages see it (their `division` input: both sample sets, percentile, seed)."""
    return config_key([*sample_keys, float(cfg.method.percentile), int(cfg.seed)])


def build_data(cfg: Any, log: Log, label_splits: Sequence[str] | None = None) -> Built:
    """Stages 1-4 (each cached): policy, samples, division, MC labels of each split in `label_splits`."""
    pol = train_policy(cfg, log)
    prm_probs, prm_rows, st_p = sample_solutions(cfg, pol, "prm", log)
    test_probs, test_rows, st_t = sample_solutions(cfg, pol, "test", log)
    div = divide(cfg, pol, prm_rows, test_rows, [st_p.key, st_t.key], log)
    div_key = labels_division_key(cfg, [st_p.key, st_t.key])
    labels = {}
    for sp in (label_splits if label_splits is not None else list(cfg.method.splits)):
        labels[sp] = rollout_labels(cfg, pol, prm_probs, prm_rows, div["prm"][sp], sp, div_key, log)
    return Built(pol, prm_probs, prm_rows, test_probs, test_rows, div, labels,
                 {"samples_prm": st_p.key, "samples_test": st_t.key, "division": div_key})


def train_split_prm(cfg: Any, b: Built, split: str, log: Log, pcfg: dict[str, Any] | None = None,
                    validate: Any = None) -> tuple[Any, str]:
    """Stage 5 for one split's MC labels (hard or soft, as the recipe `pcfg` says; default the `prm` block).

    Returns:
        (the PRM, its stage key).
    """
    kind = str((pcfg if pcfg is not None else cfg.prm).get("labels", "hard"))
    labels = [lab[kind] for lab in b.labels[split]["labels"]]
    return train_prm(cfg, b.pol, b.prm_probs, b.prm_rows, b.division["prm"][split], labels, split,
                     b.label_key(split, int(cfg.scale.rollouts)), log, pcfg, validate)


def train_orm(cfg: Any, b: Built, log: Log, pcfg: dict[str, Any] | None = None, validate: Any = None) -> tuple[Any, str]:
    """The ORM: closing marker only, labelled by the final answer (the same recipe as the PRMs)."""
    first = list(cfg.method.splits)[0]
    labels = [lab["hard"] for lab in b.labels[first]["labels"]]
    return train_prm(cfg, b.pol, b.prm_probs, b.prm_rows, b.division["prm"][first], labels, "orm",
                     b.keys["samples_prm"], log, pcfg, validate)


def test_scores(cfg: Any, b: Built, prm: Any, key: str, split: str, log: Log, orm: bool = False) -> list[list[float]]:
    """Stage 6: step scores of every test candidate under one PRM (split `split`'s boundaries)."""
    return score_candidates(cfg, b.pol, prm, key, b.test_probs, b.test_rows, b.division["test"][split], orm,
                            b.keys["samples_test"], log)
