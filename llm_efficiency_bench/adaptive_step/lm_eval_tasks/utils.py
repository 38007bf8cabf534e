"""lm-eval task helpers: the suite's loaders, prompts and checkers behind the project's task YAMLs.

The questions come from `llm_efficiency_bench.adaptive_step.tasks` (the same loaders the pipeline uses) and are scored by
`llm_efficiency_bench.adaptive_step.checkers`, so lm-eval and the pipeline judge the same answers the same way. The data
directory is `data_dir` in the task metadata (`--metadata '{"data_dir": ...}'`) or BENCH_DATA_DIR.
The GSM8K / MATH500 prompts stay the harness's usual zero-shot ones (in the YAMLs), so the numbers compare
with what people report; `bench_synthetic` uses the pipeline's own prompt (`MathTask.prompt`, `plain`).
"""

from __future__ import annotations

import os
from typing import Any

import datasets


def _root(data_dir: str | None) -> str:
    root = data_dir or os.environ.get("BENCH_DATA_DIR")
    if not root:
        raise ValueError("set BENCH_DATA_DIR (or metadata data_dir) to the folder holding gsm8k/ and math500/")
    return root


def load_gsm8k(data_dir: str | None = None, **_: Any) -> datasets.DatasetDict:
    """GSM8K train / test through `tasks.load_gsm8k`: `answer` is the full solution (few-shot targets), `gold`
    the final number the checker compares."""
    from llm_efficiency_bench.adaptive_step.tasks import load_gsm8k as suite_gsm8k

    root = _root(data_dir)
    return datasets.DatasetDict({s: datasets.Dataset.from_list(
        [{"question": p.question, "answer": p.solution, "gold": p.answer} for p in suite_gsm8k(root, s)])
        for s in ("train", "test")})


def load_math500(data_dir: str | None = None, **_: Any) -> datasets.DatasetDict:
    """MATH500 through `tasks.load_math500` (`problem`, `solution`, `answer` as in the file)."""
    from llm_efficiency_bench.adaptive_step.tasks import load_math500 as suite_math500

    rows = [{"problem": p.question, "solution": p.solution, "answer": p.answer} for p in suite_math500(_root(data_dir))]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def load_synthetic(n: int = 300, seed: int = 0, difficulty: dict[str, int] | None = None,
                   **_: Any) -> datasets.DatasetDict:
    """The suite's synthetic arithmetic test questions (`tasks.synthetic_task(n, seed, "test", **difficulty)`).

    `n`, `seed` and `difficulty` come from the task metadata (`TaskManager(metadata=...)`, set from the
    run's `task` config by `lm_eval_model.evaluate_greedy`), so these are exactly the pipeline's questions,
    with the pipeline's prompt (`text`).
    """
    from llm_efficiency_bench.adaptive_step.tasks import MathTask, synthetic_task

    task = MathTask("synthetic", {"seed": int(seed), "difficulty": difficulty or {}}, None)
    probs = synthetic_task(int(n), int(seed), "test", **(difficulty or {}))
    rows = [{"question": p.question, "text": task.prompt(p, "plain"), "answer": f"#### {p.answer}", "gold": p.answer}
            for p in probs]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def process_gsm8k(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """The suite's GSM8K checker (`checkers.check_gsm8k`: the `####` line, else the text, via math-verify)."""
    from llm_efficiency_bench.adaptive_step.checkers import check_gsm8k

    return {"acc": float(check_gsm8k(results[0], doc["gold"]))}


def process_math500(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """math-verify equivalence of the last boxed answer with the gold answer (suite checker)."""
    from llm_efficiency_bench.adaptive_step.checkers import check_math

    return {"acc": float(check_math(results[0], doc["answer"]))}
