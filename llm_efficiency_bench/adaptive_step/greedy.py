"""Greedy accuracy of each policy through lm-eval (so the numbers match what people report with it).

Experiment `greedy`: every policy of `experiment.policies` is run by lm-eval's `simple_evaluate` on the
project's task YAMLs (`lm_eval_tasks/`, reading the data directory) with the model class `bench_policy`.
The tiny policy the pipeline trains is evaluated on `bench_synthetic` (the pipeline's own test questions),
and its lm-eval accuracy is put beside the pipeline's greedy accuracy as a cross-check of both code paths.
lm-eval's own results JSON of each policy (`lm_eval_<policy>.json`: per-task metrics, task configs,
versions, generation settings) is kept beside the record, listed under the record's `lm_eval` artifacts.
"""

from __future__ import annotations

from typing import Any

from llm_efficiency_bench.adaptive_step import stage_settings
from llm_efficiency_bench.adaptive_step.policy import train_policy
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.cache import to_plain


def _acc(res: dict[str, Any], task: str) -> tuple[float, float | None]:
    """(accuracy, stderr) of one lm-eval task result, preferring the suite checker's `acc`."""
    r = res[task]
    for key in ("acc,none", "exact_match,flexible-extract", "exact_match,strict-match"):
        if key in r:
            se = r.get(key.replace(",", "_stderr,", 1))
            return float(r[key]), (float(se) if isinstance(se, (int, float)) else None)
    raise KeyError(f"lm-eval returned no accuracy for {task}: {sorted(r)}")


def _safe_name(name: str) -> str:
    """A policy name as a file-name part (letters, digits, `-`, `_`, `.`)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def greedy(ctx: RunContext) -> None:
    """Greedy accuracy per policy and task through lm-eval; pipeline-vs-lm-eval check for the tiny policy."""
    from llm_efficiency_bench.adaptive_step.lm_eval_model import evaluate_greedy

    cfg = ctx.cfg
    rows = []
    for pol_cfg in cfg.experiment.policies:
        name, source = str(pol_cfg.name), str(pol_cfg.get("source", "model_config"))
        limit = pol_cfg.get("limit")
        kwargs: dict[str, Any] = {"limit": int(limit) if limit else None, "batch_size": int(cfg.experiment.batch),
                                  "data_dir": cfg.data_dir}
        pipeline_acc = None
        if source == "pipeline":  # the policy stage's own model (trained and cached by the pipeline)
            pol = train_policy(cfg, ctx.log)
            pipeline_acc = 100 * pol.greedy_acc
            kwargs["folder"] = str(pol.folder)
            kwargs["metadata"] = {"n": stage_settings.greedy_eval_questions(cfg), "seed": int(cfg.task.seed),
                                  "difficulty": to_plain(cfg.task.difficulty)}
        elif source == "model_config":
            kwargs["model_config"] = str(pol_cfg.model_config)
        else:
            raise ConfigError("experiment.policies", f"policy {name}: unknown source {source!r} "
                                                      "(pipeline | model_config)")
        ctx.log(f"lm-eval: {name} on {list(pol_cfg.tasks)} (limit {kwargs['limit']})")
        raw = ctx.out_dir / f"lm_eval_{_safe_name(name)}.json"
        res = evaluate_greedy(list(pol_cfg.tasks), output_path=raw, **kwargs)
        ctx.artifact("lm_eval", raw)
        for task in pol_cfg.tasks:
            acc, se = _acc(res, str(task))
            n = kwargs["limit"] or (stage_settings.greedy_eval_questions(cfg) if source == "pipeline" else None)
            ctx.metric(f"greedy_acc.{name}.{task}", 100 * acc, "%", "higher",
                       note=f"lm-eval {task}, greedy, zero-shot, {n or 'all'} questions",
                       stderr=100 * se if se is not None else None)
            row = {"policy": name, "task": task, "questions": n or "all", "lm-eval accuracy (%)": 100 * acc,
                   "stderr": 100 * se if se is not None else None, "pipeline greedy (%)": None}
            if pipeline_acc is not None and task == "bench_synthetic":
                row["pipeline greedy (%)"] = pipeline_acc
                ctx.metric(f"greedy_acc.{name}.pipeline_minus_lm_eval", pipeline_acc - 100 * acc, "points", "none",
                           note="same questions and model; differences come from padding/batching only")
            rows.append(row)
    ctx.table("greedy", "Greedy accuracy through lm-eval", rows, notes=[
        "lm-eval's simple_evaluate with the project's task YAMLs (llm_efficiency_bench/adaptive_step/lm_eval_tasks) and the "
        "registered model class `bench_policy`; zero-shot; accuracy by the suite's checkers",
        "bench_synthetic = the pipeline's own test questions; its `pipeline greedy` column is the policy "
        "stage's greedy accuracy on the same questions"])
