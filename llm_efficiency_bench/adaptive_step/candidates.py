"""Released Best-of-N candidates: the file format, loading, step markers, correctness and marker counts.

The candidates come from a JSONL file (`released.candidates`) in the format of the paper's released
Best-of-N evaluation data (`Lux0926/ASPRM`, `evaluation/math/BON/*.jsonl`; full sets on the hub as
`Lux0926/ASPRM-BON-Evaluation-Dataset-Math` / `-Code`; two example files of the authors are in the data
directory, `asprm_bon/`). One row per question::

    {"idx": 1,
     "question": "A robe takes 2 bolts ...",                       # shown to the PRM (Math-Shepherd format)
     "input": "Below is an instruction ... ### Response: Let's think step by step.",   # the policy prompt
     "answer": "3",                                                # gold final answer (math tasks)
     "pred": [" If the robe takes ...\\n#### 3\\nThe answer is: 3 ", ...],                 # N candidates
     "math_confidence_list": [" ... fiber.\\nSo ки  in total ... 3  ки ", ...],  # same N, confidence markers
     "math_hard_list": [...],     # same N, a marker before every newline (rule-based steps)
     "math_random_list": [...]}   # same N, markers at random positions (Table 3 control)

The three `*_list` fields carry the same candidates as `pred` with the step marker text " ки " inserted
before each step-boundary token plus one closing marker (AdaptiveStep §3.1, Fig. 2): the released eval
chooses the list with `--eval_type confidence|hard|random`. Field names are settings (`released.fields`,
`released.arms.<arm>.steps`). For code tasks a row names its problem by `task_id` (e.g. `HumanEval/0`), which
is looked up in the data directory and checked through the sandbox (`tasks.CodeTask`).

Candidates without released markers (or PRMs trained on newline steps, Math-Shepherd) use `steps: newline`:
each non-empty line of the plain candidate gets the PRM's marker appended (Math-Shepherd format
"Step 1: ... ки\\nStep 2: ... ки").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from llm_efficiency_bench.adaptive_step import stage_settings
from llm_efficiency_bench.adaptive_step.released_prm import PrmSpec
from llm_efficiency_bench.adaptive_step.stage import stage
from llm_efficiency_bench.adaptive_step.tasks import CodeTask, Problem, make_task
from llm_efficiency_bench.core.cache import file_digest, save_atomic, to_plain
from llm_efficiency_bench.core.data import iter_jsonl
from llm_efficiency_bench.core.errors import ConfigError


@dataclass
class Row:
    """One question of the candidates file (the first `pool` candidates kept)."""

    problem: Problem
    prompt: str
    solutions: list[str]
    fields: dict[str, list[str]]


def candidates_path(cfg: Any) -> Path:
    """The candidates file: `released.candidates`, absolute or relative to the data directory."""
    from llm_efficiency_bench.core.paths import data_dir as resolve_data_dir

    rel = cfg.released.get("candidates")
    if not rel:
        raise ConfigError("released.candidates", "the released Best-of-N needs a candidates JSONL (the paper's "
                                                 "released BoN evaluation data, e.g. from the hub dataset "
                                                 "Lux0926/ASPRM-BON-Evaluation-Dataset-Math; format in "
                                                 "llm_efficiency_bench/adaptive_step/candidates.py)")
    path = Path(str(rel)).expanduser()
    if not path.is_absolute():
        path = resolve_data_dir(cfg.data_dir) / path
    if not path.is_file():
        raise ConfigError("released.candidates", f"candidates file {path} not found")
    return path


def load_candidates(cfg: Any) -> tuple[list[Row], str]:
    """Rows of `released.candidates` (the first `stage_settings.released_questions` questions, first
    `released.pool` candidates each) and the file's SHA-256."""
    rel = cfg.released
    path = candidates_path(cfg)
    f = {"question": "question", "prompt": "input", "answer": "answer", "solutions": "pred", "task_id": "task_id",
         **dict(rel.get("fields") or {})}
    n_q, pool = stage_settings.released_questions(cfg), rel.get("pool")
    task = make_task(cfg)
    code = isinstance(task, CodeTask)
    by_id = task.problems_by_id() if code else {}  # code rows name any problem by task id
    rows: list[Row] = []
    # One JSONL reader: a bad line names the file and line (llm_efficiency_bench.core.data.iter_jsonl).
    for line_no, r in iter_jsonl(path, "released.candidates"):
        k = line_no - 1
        if len(rows) >= n_q:
            break
        sols = r.get(f["solutions"])
        if not isinstance(sols, list) or not sols:
            raise ConfigError("released.fields.solutions", f"{path.name} row {k}: no list {f['solutions']!r}")
        keep = len(sols) if pool is None else min(len(sols), int(pool))
        if code:
            tid = str(r.get(f["task_id"]))
            if tid not in by_id:
                raise ConfigError("released.fields.task_id", f"{path.name} row {k}: task {tid!r} is not a "
                                                             f"{task.name} problem of the data directory")
            prob = by_id[tid]
        else:
            if f["answer"] not in r:
                raise ConfigError("released.fields.answer", f"{path.name} row {k}: no gold answer "
                                                            f"{f['answer']!r}")
            q = str(r.get(f["question"], ""))
            prob = Problem(f"released/{r.get('idx', k)}", q, str(r[f["answer"]]))
        lists = {key: list(v[:keep]) for key, v in r.items() if isinstance(v, list) and key != f["solutions"]}
        rows.append(Row(prob, str(r.get(f["prompt"]) or prob.question), [str(s) for s in sols[:keep]], lists))
    if not rows:
        raise ConfigError("released.candidates", f"{path} has no rows")
    return rows, file_digest(path)


def strip_markers(text: str, marker_text: str) -> str:
    """A released marked candidate without its step markers (should give back the `pred` text)."""
    return text.replace(marker_text, "")


def newline_steps(solution: str, spec: PrmSpec) -> str:
    """Rule-based steps for newline-style PRMs: `spec.insert` after every non-empty line (Math-Shepherd)."""
    out, k = [], 0
    for line in solution.strip().split("\n"):
        if not line.strip():
            continue
        k += 1
        out.append(spec.step_prefix.format(k=k) + line.strip() + spec.insert)
    return "\n".join(out) if out else solution.strip() + spec.insert


def arm_solutions(cfg: Any, arm: str, steps: str, spec: PrmSpec, rows: Sequence[Row]) -> tuple[list[str], int]:
    """Marked candidate texts of one arm, flattened in row order, and how many differ from `pred`.

    Args:
        steps: `newline` (mark each line of the plain candidate) or a candidates-file field whose lists
            already carry the markers (`math_confidence_list`, `math_hard_list`, `math_random_list`).

    Returns:
        (texts, misaligned): a marked text whose markers removed do not give its `pred` text back (compared
        with whitespace collapsed) is counted; it is still scored, and correctness is always that of `pred`.
    """
    marker_text = str(cfg.released.get("marker_text") or " ки ")
    texts: list[str] = []
    bad = 0
    for r in rows:
        if steps == "newline":
            texts += [newline_steps(s, spec) for s in r.solutions]
            continue
        if steps not in r.fields:
            raise ConfigError(f"released.arms.{arm}.steps", f"field {steps!r} is not in the candidates file "
                                                            f"(lists there: {sorted(r.fields)})")
        marked = r.fields[steps]
        if len(marked) != len(r.solutions):
            raise ConfigError(f"released.arms.{arm}.steps", f"{steps!r} has {len(marked)} candidates for "
                                                            f"{r.problem.uid}, the solutions field {len(r.solutions)}")
        for m, s in zip(marked, r.solutions):
            bad += " ".join(strip_markers(m, marker_text).split()) != " ".join(s.split())
        texts += [str(m) for m in marked]
    return texts, bad


def stage_key(cfg: Any, sha: str) -> dict[str, Any]:
    """What determines a released stage besides the PRM: the file, how much of it, its field names, the task."""
    return {"sha": sha, "n_q": stage_settings.released_questions(cfg), "pool": cfg.released.get("pool"),
            "fields": to_plain(cfg.released.get("fields") or {}), "task": str(cfg.task.name)}


def candidate_truth(cfg: Any, rows: Sequence[Row], sha: str) -> tuple[list[bool], list[str | None]]:
    """Correctness and majority-vote answer key of every candidate (cached stage `released_candidates`).

    GSM8K: numeric comparison of the `####` / last number; MATH500: math-verify on the last box or the
    MetaMath "The answer is: ..."; code: in the bubblewrap sandbox (`tasks.Task.released_truth`).
    """
    entry = stage(stage_settings.run_options(cfg), "released_candidates",
                  {**stage_key(cfg, sha), "code_timeout": cfg.task.get("code_timeout")})

    def build(work: Path) -> dict[str, Any]:
        texts = [s for r in rows for s in r.solutions]
        probs = [r.problem for r in rows for _ in r.solutions]
        correct, answers = make_task(cfg).released_truth(texts, probs)
        save_atomic(work / "truth.pt", {"correct": correct, "answers": answers})
        return {"n": len(texts), "acc": float(np.mean(correct))}

    entry.get_or_build(build)
    out = entry.load("truth.pt")
    return out["correct"], out["answers"]


def marker_counts(rows: Sequence[Row], marker: str = "ки") -> dict[str, int]:
    """Step markers per marked field (`math_confidence_list`, `math_hard_list`, ...), summed over every kept
    candidate: the authors' own step counts per split rule (the paper-side markers ratio)."""
    counts: dict[str, int] = {}
    for r in rows:
        for key, texts in r.fields.items():
            if texts and all(isinstance(t, str) for t in texts) and any(marker in t for t in texts):
                counts[key] = counts.get(key, 0) + sum(t.count(marker) for t in texts)
    return counts
