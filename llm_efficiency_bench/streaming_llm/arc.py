"""ARC (AI2 Reasoning Challenge, Clark et al. 2018) questions for streaming QA (StreamingLLM Table 5).

Read from the data directory (`arc/<split>_<part>.jsonl`, the official release's JSON lines: `id`,
`question.stem`, `question.choices[{text, label}]`, `answerKey`; any other field, such as a retrieved `para`
per choice, is ignored). When the file is absent and `datasets` can reach the hub, `allenai/ai2_arc` is
read instead (same fields, flattened). Questions keep the file's order: that order is the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.paths import data_dir as resolve_data_dir

SPLITS = {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}
PARTS = {"test": "test", "dev": "validation"}  # file name -> hub split
SETTING = "experiment.splits"


@dataclass(frozen=True)
class Question:
    """One ARC question: choice texts in label order and the index of the right one."""

    id: str
    stem: str
    labels: tuple[str, ...]
    choices: tuple[str, ...]
    answer: int


def _question(raw: dict, where: str) -> Question:
    q = raw.get("question", raw)
    stem = q.get("stem", q.get("question")) if isinstance(q, dict) else None
    choices = q.get("choices") if isinstance(q, dict) else None
    if isinstance(choices, dict):  # hub layout: {"text": [...], "label": [...]}
        choices = [{"text": t, "label": lab} for t, lab in zip(choices["text"], choices["label"])]
    if not isinstance(stem, str) or not isinstance(choices, list) or not choices:
        raise ConfigError(SETTING, f"{where}: not an ARC question (needs question.stem and question.choices)")
    labels = tuple(str(c["label"]) for c in choices)
    key = str(raw.get("answerKey", ""))
    if key not in labels:
        raise ConfigError(SETTING, f"{where}: answerKey {key!r} is not one of the labels {labels}")
    return Question(str(raw.get("id", where)), stem.strip(), labels,
                    tuple(str(c["text"]).strip() for c in choices), labels.index(key))


def load_arc(split: str, part: str, data_dir_setting: str | None) -> list[Question]:
    """All questions of one ARC split (`arc_easy` / `arc_challenge`) and part (`test` / `dev`), in file order.

    Raises:
        ConfigError: an unknown split or part, or neither the file nor the hub is available.
    """
    if split not in SPLITS:
        raise ConfigError(SETTING, f"unknown ARC split {split!r}; choose from {sorted(SPLITS)}")
    if part not in PARTS:
        raise ConfigError("experiment.part", f"unknown ARC part {part!r}; choose from {sorted(PARTS)}")
    name = f"{split}_{part}.jsonl"
    try:
        path = resolve_data_dir(data_dir_setting) / "arc" / name
    except ConfigError:
        path = None
    if path is not None and path.is_file():
        return _from_file(path)
    try:
        from datasets import load_dataset

        rows = load_dataset("allenai/ai2_arc", SPLITS[split], split=PARTS[part])
    except Exception as e:  # no `datasets`, no network, no such dataset: say where the file was expected
        where = path if path is not None else f"<data_dir>/arc/{name}"
        raise ConfigError("data_dir", f"ARC file {where} not found and allenai/ai2_arc could not be read "
                          f"({type(e).__name__}); set BENCH_DATA_DIR to a folder with arc/{name}") from e
    return [_question(dict(r), f"allenai/ai2_arc {SPLITS[split]} row {k}") for k, r in enumerate(rows)]


def _from_file(path: Path) -> list[Question]:
    out = []
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError("data_dir", f"{path}: line {k + 1} is not JSON ({e})") from e
        out.append(_question(raw, f"{path.name} line {k + 1}"))
    if not out:
        raise ConfigError("data_dir", f"{path} has no questions")
    return out
