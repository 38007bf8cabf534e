"""lm-eval task helpers: read GSM8K / MATH500 from the suite's data directory and score with its checkers.

The data directory is `data_dir` in the task metadata (`--metadata '{"data_dir": ...}'`) or BENCH_DATA_DIR.
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
    root = _root(data_dir)
    return datasets.DatasetDict({s: datasets.Dataset.from_json(os.path.join(root, "gsm8k", f"{s}.jsonl"))
                                 for s in ("train", "test")})


def load_math500(data_dir: str | None = None, **_: Any) -> datasets.DatasetDict:
    root = _root(data_dir)
    return datasets.DatasetDict({"test": datasets.Dataset.from_json(os.path.join(root, "math500", "test.jsonl"))})


def load_synthetic(n: int = 300, seed: int = 0, difficulty: dict[str, int] | None = None,
                   **_: Any) -> datasets.DatasetDict:
    """The suite's synthetic arithmetic test questions (`tasks.synthetic_task(n, seed, "test", **difficulty)`).

    `n`, `seed` and `difficulty` come from the task metadata (`TaskManager(metadata=...)`, set from the
    run's `task` config by `lm_eval_model.evaluate_greedy`), so these are exactly the pipeline's questions.
    """
    from bench.adaptive_step.tasks import synthetic_task

    probs = synthetic_task(int(n), int(seed), "test", **(difficulty or {}))
    rows = [{"question": p.question, "answer": f"#### {p.answer}"} for p in probs]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def process_gsm8k(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Numeric comparison of the final answer (suite checker; `####` else last number)."""
    from bench.adaptive_step.tasks import check_gsm8k

    gold = doc["answer"].rsplit("####", 1)[1].strip().replace(",", "")
    return {"acc": float(check_gsm8k(results[0], gold))}


def process_math500(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """math-verify equivalence of the last boxed answer with the gold answer (suite checker)."""
    from bench.adaptive_step.tasks import check_math

    return {"acc": float(check_math(results[0], doc["answer"]))}
