"""The stages' inputs from a run's config: the one place that reads the config for the pipeline's stages.

The stages never see the config: each receives its `stage_inputs` object, built here from the config's
`method`, `model`, `task`, `prm`, `tvd` and `pipeline` blocks, the pipeline's sizes and the keys of its
upstream results. The experiments (`experiments.py`, through `pipeline.py`, `recipe_selection.py`,
`oracle.py`) call these.

The pipeline's sizes are paper-wide and set per profile (`settings.py` declares their ranges), grouped by the
stage they size:

    policy.eval_questions        test questions of the policy's greedy accuracy (stage `policy`)
    samples.<split>_questions    questions of split prm (PRM data), test (Best-of-N, TVD) or val (validation;
    samples.<split>_samples      0 = none), and sampled solutions per question (stages `samples_<split>`)
    labels.rollouts              K Monte-Carlo rollouts per step prefix (stages `labels_<split>`, §3.2)
    pipeline.max_new             tokens generated per answer (greedy evaluation, samples, rollouts, TVD)
    pipeline.batch               rows per forward pass (every stage)
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

from llm_efficiency_bench.adaptive_step.stage import RunOptions
from llm_efficiency_bench.adaptive_step.stage_inputs import (DivisionInputs, LabelsInputs, PolicyInputs, SamplesInputs,
                                                            ScoresInputs, TvdInputs)
from llm_efficiency_bench.adaptive_step.tasks import make_task
from llm_efficiency_bench.core.cache import to_plain

# PRM-data sizes a selection variant may change (`select.variants.<name>.data`), named as in `samples`
PRM_DATA_SIZES = ("prm_questions", "prm_samples")


def run_options(cfg: Any) -> RunOptions:
    """`pipeline.rerun` and `pipeline.progress`."""
    return RunOptions(rerun=frozenset(str(s) for s in cfg.pipeline.rerun), progress=bool(cfg.pipeline.progress))


def batch(cfg: Any) -> int:
    """Rows per forward pass (`pipeline.batch`)."""
    return int(cfg.pipeline.batch)


def max_new(cfg: Any) -> int:
    """Tokens generated per answer (`pipeline.max_new`)."""
    return int(cfg.pipeline.max_new)


def greedy_eval_questions(cfg: Any) -> int:
    """Test questions of the policy's greedy accuracy (`policy.eval_questions`)."""
    return int(cfg.policy.eval_questions)


def n_questions(cfg: Any, split: str) -> int:
    """Questions of split `split`: prm, val (0: no validation) or test (`samples.<split>_questions`)."""
    return int(_split_size(cfg, split, "questions"))


def n_samples(cfg: Any, split: str) -> int:
    """Sampled solutions per question of split `split` (`samples.<split>_samples`)."""
    return int(_split_size(cfg, split, "samples"))


def _split_size(cfg: Any, split: str, what: str) -> Any:
    if split == "val":  # optional: a profile without validation questions selects no recipe
        return cfg.samples.get(f"val_{what}", 0)
    return cfg.samples[f"{'prm' if split == 'prm' else 'test'}_{what}"]


def released_questions(cfg: Any) -> int:
    """Questions kept of a released candidates file: the test split's size (`samples.test_questions`)."""
    return n_questions(cfg, "test")


def with_prm_data(cfg: Any, sizes: dict[str, Any] | None) -> Any:
    """`cfg` with a selection variant's PRM-data sizes (`prm_questions`, `prm_samples`) in place of the
    profile's (`samples.*`); `cfg` itself when there are none."""
    if not sizes:
        return cfg
    from omegaconf import OmegaConf

    out = copy.deepcopy(cfg)
    for k, val in sizes.items():
        if k not in PRM_DATA_SIZES:  # settings.PrmVariants refuses any other key before the run
            raise KeyError(f"{k!r} is not a PRM-data size ({', '.join(PRM_DATA_SIZES)})")
        OmegaConf.update(out, f"samples.{k}", val, merge=False)
    return out


def policy_inputs(cfg: Any) -> PolicyInputs:
    """The policy stage: the `model` and `task` blocks, the greedy evaluation's size and budget."""
    return PolicyInputs(model=to_plain(cfg.model), task_settings=to_plain(cfg.task),
                        n_eval=greedy_eval_questions(cfg), max_new=max_new(cfg),
                        task=make_task(cfg), batch=batch(cfg), dtype=str(cfg.dtype), device=str(cfg.device),
                        data_dir=cfg.get("data_dir"))


def samples_inputs(cfg: Any, policy_key: str, split: str) -> SamplesInputs:
    """The samples of question split `split` (prm, test, val) drawn from the policy `policy_key`."""
    return SamplesInputs(split=split, policy=policy_key, task=to_plain(cfg.task), n_q=n_questions(cfg, split),
                         n_s=n_samples(cfg, split), temp=float(cfg.method.temperature), max_new=max_new(cfg),
                         seed=int(cfg.seed), batch=batch(cfg))


def division_inputs(cfg: Any, sample_keys: Sequence[str]) -> DivisionInputs:
    """The division of the samples `sample_keys` (PRM data, then test)."""
    return DivisionInputs(samples=tuple(sample_keys), pct=float(cfg.method.percentile), seed=int(cfg.seed))


def labels_inputs(cfg: Any, division_key: str, split: str) -> LabelsInputs:
    """The MC labels of split rule `split` on the division `division_key` (`DivisionInputs.result_key`)."""
    return LabelsInputs(split=split, division=division_key, K=int(cfg.labels.rollouts), max_new=max_new(cfg),
                        temp=float(cfg.method.temperature), seed=int(cfg.seed), batch=batch(cfg))


def prm_recipe(cfg: Any) -> dict[str, Any]:
    """The `prm` block: the PRM recipe when no selection variant overrides it."""
    return dict(to_plain(cfg.prm))


def scores_inputs(cfg: Any, prm_key: str, samples_key: str, bounds: Sequence[Sequence[int]], orm: bool) -> ScoresInputs:
    """The step scores of the samples `samples_key` (boundaries `bounds`) under the PRM `prm_key`."""
    return ScoresInputs(prm=prm_key, samples=samples_key, orm=bool(orm), bounds=bounds, batch=batch(cfg))


def tvd_inputs(cfg: Any, policy_key: str, prm_key: str, n: int) -> TvdInputs:
    """Value-guided decoding of the first `n` test questions (`tvd.threshold`, `tvd.top_k`)."""
    return TvdInputs(policy=policy_key, prm=prm_key, n=int(n), thr=float(cfg.tvd.threshold),
                     k=int(cfg.tvd.top_k), max_new=max_new(cfg), task=to_plain(cfg.task), batch=batch(cfg))
