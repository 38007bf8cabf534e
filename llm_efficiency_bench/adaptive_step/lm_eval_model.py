"""lm-eval integration: a registered model class for the suite's policies and the project's task YAMLs.

    from llm_efficiency_bench.adaptive_step.lm_eval_model import evaluate_greedy
    evaluate_greedy(["bench_gsm8k", "bench_math500"], model_config="adaptive_smollm2_135m", limit=20)

or from the command line (the import registers `bench_policy`):

    python -c "import llm_efficiency_bench.adaptive_step.lm_eval_model, lm_eval.__main__ as m; m.cli_evaluate()" \
        --model bench_policy --model_args model_config=smollm2_135m \
        --include_path llm_efficiency_bench/adaptive_step/lm_eval_tasks --tasks bench_gsm8k --limit 20

The policy is loaded by the suite's loader (`llm_efficiency_bench.core.models.load_model`: SmolLM2 from its GGUF package,
hub models by id) or from a folder (e.g. the tiny policy trained by the pipeline), then handed to lm-eval's
HFLM as a model instance: nothing is fetched from a hub for the CPU profiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from llm_efficiency_bench.core.paths import CONFIG_DIR

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"


def _load(model_config: str | None, folder: str | None, dtype: str):
    if folder:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    from omegaconf import OmegaConf

    from llm_efficiency_bench.core.models import load_model

    cfg = OmegaConf.load(CONFIG_DIR / "model" / f"{model_config}.yaml")
    lm = load_model(cfg, dtype=dtype)
    return lm.model, lm.tokenizer


@register_model("bench_policy")
class BenchPolicyLM(HFLM):
    """HFLM over a model loaded by the suite.

    Args:
        model_config: a file name in configs/model/ (without `.yaml`), e.g. `smollm2_135m`.
        folder: a local model folder instead (takes precedence).
        dtype: weights dtype for `model_config` models.
        **kwargs: passed to HFLM (batch_size, max_length, ...).
    """

    def __init__(self, model_config: str | None = "smollm2_135m", folder: str | None = None,
                 dtype: str = "float32", **kwargs: Any):
        model, tok = _load(model_config, folder, dtype)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        kwargs.setdefault("max_length", int(getattr(model.config, "max_position_embeddings", 2048)))
        super().__init__(pretrained=model, tokenizer=tok, **kwargs)


def evaluate_greedy(tasks: Sequence[str], model_config: str | None = "smollm2_135m", folder: str | None = None,
                    limit: int | None = None, batch_size: int = 1, data_dir: str | None = None,
                    gen_kwargs: str | None = None, metadata: dict[str, Any] | None = None,
                    output_path: Path | None = None) -> dict[str, Any]:
    """Run lm-eval's `simple_evaluate` on the project's tasks; returns its `results` dict per task.

    Only the project's task folder is indexed (`include_defaults=False`): indexing lm-eval's thousands of
    built-in task YAMLs took minutes on a 2-core machine and none of them is used here. `metadata` reaches
    the tasks' dataset functions (e.g. `n`, `seed`, `difficulty` of `bench_synthetic`).

    Args:
        output_path: where to write lm-eval's own results JSON (`write_results`), e.g. beside a record.
    """
    import os

    import lm_eval
    from lm_eval.tasks import TaskManager

    if data_dir:
        os.environ["BENCH_DATA_DIR"] = data_dir
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    margs = {"folder": folder} if folder else {"model_config": model_config}
    out = lm_eval.simple_evaluate(model="bench_policy", model_args=margs, tasks=list(tasks), task_manager=tm,
                                  limit=limit, batch_size=batch_size, gen_kwargs=gen_kwargs,
                                  log_samples=False)
    if output_path is not None:
        write_results(out, output_path)
    return out["results"]


def write_results(out: dict[str, Any], path: Path) -> Path:
    """lm-eval's results JSON: what `simple_evaluate` returned (results, configs, versions, n-shot, n-samples,
    model and generation settings, environment), serialised as its `--output_path` serialises it, under a
    fixed name instead of its time-stamped one. Never overwrites a file (each policy gets its own name)."""
    import json

    from lm_eval.utils import handle_non_serializable

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: lm-eval results are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path
