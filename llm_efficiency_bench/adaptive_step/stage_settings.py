"""The stages' inputs from a run's config: the one place that reads the config for the pipeline's stages.

The stages never see the config: each receives its `stage_inputs` object, built here from the config's
`scale`, `method`, `model`, `task`, `prm`, `tvd` and `pipeline` blocks and the keys of its upstream results.
The experiments (`experiments.py`, through `pipeline.py`, `recipe_selection.py`, `oracle.py`) call these.
"""

from __future__ import annotations

from typing import Any, Sequence

from llm_efficiency_bench.adaptive_step.stage import RunOptions
from llm_efficiency_bench.adaptive_step.stage_inputs import (DivisionInputs, LabelsInputs, PolicyInputs, SamplesInputs,
                                                            ScoresInputs, TvdInputs)
from llm_efficiency_bench.adaptive_step.tasks import make_task
from llm_efficiency_bench.core.cache import to_plain


def run_options(cfg: Any) -> RunOptions:
    """`pipeline.rerun` and `pipeline.progress`."""
    return RunOptions(rerun=frozenset(str(s) for s in cfg.pipeline.rerun), progress=bool(cfg.pipeline.progress))


def batch(cfg: Any) -> int:
    """Rows per forward pass (`scale.batch`)."""
    return int(cfg.scale.batch)


def policy_inputs(cfg: Any) -> PolicyInputs:
    """The policy stage: the `model` and `task` blocks, the greedy evaluation's size and budget."""
    return PolicyInputs(model=to_plain(cfg.model), task_settings=to_plain(cfg.task),
                        n_eval=int(cfg.scale.greedy_eval_questions), max_new=int(cfg.scale.max_new),
                        task=make_task(cfg), batch=batch(cfg), dtype=str(cfg.dtype), device=str(cfg.device),
                        data_dir=cfg.get("data_dir"))


def _n_questions(cfg: Any, split: str) -> int:
    return int({"prm": cfg.scale.prm_questions, "val": cfg.scale.get("val_questions", 0)}.get(split, cfg.scale.test_questions))


def _n_samples(cfg: Any, split: str) -> int:
    return int({"prm": cfg.scale.prm_samples, "val": cfg.scale.get("val_samples", 0)}.get(split, cfg.scale.test_samples))


def samples_inputs(cfg: Any, policy_key: str, split: str) -> SamplesInputs:
    """The samples of question split `split` (prm, test, val) drawn from the policy `policy_key`."""
    return SamplesInputs(split=split, policy=policy_key, task=to_plain(cfg.task), n_q=_n_questions(cfg, split),
                         n_s=_n_samples(cfg, split), temp=float(cfg.method.temperature), max_new=int(cfg.scale.max_new),
                         seed=int(cfg.seed), batch=batch(cfg))


def division_inputs(cfg: Any, sample_keys: Sequence[str]) -> DivisionInputs:
    """The division of the samples `sample_keys` (PRM data, then test)."""
    return DivisionInputs(samples=tuple(sample_keys), pct=float(cfg.method.percentile), seed=int(cfg.seed))


def labels_inputs(cfg: Any, division_key: str, split: str) -> LabelsInputs:
    """The MC labels of split rule `split` on the division `division_key` (`DivisionInputs.result_key`)."""
    return LabelsInputs(split=split, division=division_key, K=int(cfg.scale.rollouts), max_new=int(cfg.scale.max_new),
                        temp=float(cfg.method.temperature), seed=int(cfg.seed), batch=batch(cfg))


def prm_recipe(cfg: Any) -> dict[str, Any]:
    """The `prm` block: the PRM recipe when no selection variant overrides it."""
    return dict(to_plain(cfg.prm))


def scores_inputs(cfg: Any, prm_key: str, samples_key: str, bounds: Sequence[Sequence[int]], orm: bool) -> ScoresInputs:
    """The step scores of the samples `samples_key` (boundaries `bounds`) under the PRM `prm_key`."""
    return ScoresInputs(prm=prm_key, samples=samples_key, orm=bool(orm), bounds=bounds, batch=batch(cfg))


def tvd_inputs(cfg: Any, policy_key: str, prm_key: str) -> TvdInputs:
    """Value-guided decoding of `scale.tvd_questions` test questions (`tvd.threshold`, `tvd.top_k`)."""
    return TvdInputs(policy=policy_key, prm=prm_key, n=int(cfg.scale.tvd_questions), thr=float(cfg.tvd.threshold),
                     k=int(cfg.tvd.top_k), max_new=int(cfg.scale.max_new), task=to_plain(cfg.task), batch=batch(cfg))
