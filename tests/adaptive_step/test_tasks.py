"""Answer checkers on the real data (GSM8K, MATH500, HumanEval) and the synthetic task."""

from __future__ import annotations

import pytest

from llm_efficiency_bench.adaptive_step import checkers, tasks


def test_gsm8k_all_gold_answers_self_consistent(data_dir):
    probs = tasks.load_gsm8k(str(data_dir), "test")
    assert len(probs) == 1319
    # the full reference solution (with its `####` line) is judged correct against its own gold number
    assert all(checkers.check_gsm8k(p.solution, p.answer) for p in probs)
    # and a shifted answer is judged wrong for every question
    assert not any(checkers.check_gsm8k(f"#### {float(p.answer) + 1}", p.answer) for p in probs)


def test_gsm8k_numeric_comparison():
    assert checkers.check_gsm8k("so 9 * 2 = 18\n#### 18.0", "18")
    assert checkers.check_gsm8k("#### $1,200", "1200")
    assert checkers.check_gsm8k("the answer is 42.", "42")          # no ####: math-verify reads the text
    assert not checkers.check_gsm8k("#### 17", "18")
    assert not checkers.check_gsm8k("no number here", "18")
    assert checkers.extract_gsm8k_answer("3 + 4 = 7\n#### -5") == "-5"


def test_gsm8k_free_text_answers_through_math_verify():
    # what a last-number rule gets wrong: the next question a base model writes, a remark after the answer
    assert checkers.check_gsm8k("6 * 3 = 18\nThe answer is 18.\n\nQuestion: Tom has 3 cats and 4 dogs.", "18")
    assert checkers.check_gsm8k("**Final answer:** 1,800 (over 2 days).", "1800")
    assert checkers.check_gsm8k("The answer is $\\boxed{18}$.\nCheck: 19 - 1 = 18, and 18 / 6 = 3.", "18")
    assert checkers.check_gsm8k("#### 18\n\nQuestion: Tom has 3 cats and 4 dogs", "18")  # only the #### line is read
    # values, not strings
    assert checkers.check_gsm8k("#### 1/2", "0.5") and checkers.check_gsm8k("#### 1 000", "1000")
    assert not checkers.check_gsm8k("The answer is $\\boxed{19}$.", "18")
    assert not checkers.check_gsm8k("#### 18 apples", "17")


def _gsm8k_variants(solution: str, gold: str) -> list[tuple[str, bool]]:
    """A reference solution with its answer written in other ways (right) or changed (wrong)."""
    base, n = solution.rsplit("####", 1)[0].rstrip(), int(gold)
    return [(f"{base}\n#### {n:,}", True), (f"{base}\n#### ${n}", True), (f"{base}\n#### {n}.00", True),
            (f"{base}\n#### {n} dollars", True), (f"{base}\nThe answer is: {n}", True),
            (f"{base}\nThe answer is ${n:,}.", True), (f"{base}\nSo the answer is $\\boxed{{{n}}}$.", True),
            (f"{base}\n#### {n + 1}", False), (f"{base}\n#### {n}0", False), (f"{base}\n#### {n}.5", False),
            (f"{base}\nSo the answer is $\\boxed{{{n + 1}}}$.", False), (f"{base}\nThe answer is: ${n - 1}", False)]


def test_gsm8k_formatted_and_wrong_answers_agree_with_gold(data_dir):
    # every 10th test question (132): money signs, thousands commas, decimals, units, "The answer is", \boxed
    probs = tasks.load_gsm8k(str(data_dir), "test")[::10]
    cases = [(t, p.answer, right) for p in probs for t, right in _gsm8k_variants(p.solution, p.answer)]
    wrong = [(t[-40:], gold, right) for t, gold, right in cases if checkers.check_gsm8k(t, gold) != right]
    assert not wrong, wrong[:5]


def test_gsm8k_bare_numbers_judged_as_math_verify_judges_them():
    # the numeric shortcut for a bare-number answer line gives math-verify's verdict
    for pred, gold in [("18", "18"), ("18.0", "18"), ("$1,200", "1200"), ("1,200.50", "1200.5"), ("-5", "-5"),
                       (".5", "0.5"), ("17", "18"), ("18.5", "18"), ("-18", "18"), ("1,200", "120")]:
        assert checkers.check_gsm8k(f"#### {pred}", gold) == checkers._verify(gold, pred, 20), (pred, gold)


@pytest.mark.e2e  # every MATH500 answer through math-verify
def test_math500_all_gold_answers_self_consistent_via_math_verify(data_dir):
    probs = tasks.load_math500(str(data_dir))
    assert len(probs) == 500
    # math-verify alone (no string shortcut) must accept every gold answer against itself
    bad = [p.answer for p in probs if not checkers.math_equal(p.answer, p.answer, string_fallback=False)]
    assert bad == []
    # and the boxed answer of every reference solution matches the gold answer
    assert all(checkers.check_math(p.solution, p.answer) for p in probs)


def test_math_equivalence_and_rejection():
    assert checkers.math_equal("0.5", "\\frac{1}{2}")
    assert checkers.math_equal("\\dfrac{1}{2}", "\\frac12")
    assert not checkers.math_equal("\\frac{1}{3}", "\\frac{1}{2}")
    assert not checkers.math_equal(None, "1")
    assert checkers.last_boxed("a \\boxed{\\frac{a}{b}} then \\boxed{x^{2}}") == "x^{2}"
    assert checkers.check_math("so $\\boxed{2\\sqrt{2}}$", "\\sqrt{8}")


def test_humaneval_few_canonical_pass_and_wrong_fails(data_dir):
    probs = tasks.load_humaneval(str(data_dir), limit=3)
    res = checkers.run_code_checks([p.meta["problem"] for p in probs], [p.solution for p in probs])
    assert [r["passed"] for r in res] == [True, True, True]
    wrong = checkers.run_code_checks([probs[0].meta["problem"]], ["    return not True\n"])
    assert wrong[0]["passed"] is False


@pytest.mark.e2e
def test_code_runs_outside_this_process_with_time_limit():
    import os

    pid = os.getpid()
    prob = {"task_id": "t/0", "prompt": "def f():\n", "entry_point": "f",
            "test": f"def check(c):\n    assert {pid} not in c()\n"}
    # the program's process and its parent are both other processes than this test's interpreter
    res = checkers.run_code_checks([prob, prob], ["    import os\n    return (os.getpid(), os.getppid())\n",
                                           "    while True:\n        pass\n"], timeout=1.0)
    assert res[0]["passed"] is True, res[0]
    assert res[1]["passed"] is False and "timed out" in res[1]["result"]
    # a program that reports this interpreter's pid would fail: the check is not vacuous
    assert checkers.run_code_checks([prob], [f"    return ({pid},)\n"])[0]["passed"] is False


def test_mbpp_reference_code_passes_and_wrong_fails(data_dir):
    probs = tasks.load_mbpp(str(data_dir), limit=3)
    res = checkers.run_code_checks([p.meta["problem"] for p in probs], [p.solution for p in probs])
    assert all(r["passed"] for r in res), res
    bad = checkers.run_code_checks([probs[0].meta["problem"]], [f"def {probs[0].answer}(*a):\n    return None\n"])
    assert bad[0]["passed"] is False


def test_synthetic_task_deterministic_and_consistent():
    a = tasks.synthetic_task(50, seed=3, split="train")
    b = tasks.synthetic_task(50, seed=3, split="train")
    c = tasks.synthetic_task(50, seed=3, split="test")
    assert [p.question for p in a] == [p.question for p in b]
    assert [p.question for p in a] != [p.question for p in c]
    for p in a:
        lines = p.solution.split("\n")
        assert lines[-1] == f"#### {p.answer}" and 2 <= len(lines) - 1 <= 3
        # every step line is arithmetically right and chains into the next
        prev = None
        for ln in lines[:-1]:
            lhs, rhs = ln.split(" = ")
            x, op, y = lhs.split(" ")
            assert {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op] == int(rhs) >= 0
            assert prev is None or int(x) == prev
            prev = int(rhs)
        assert checkers.check_gsm8k(p.solution, p.answer)
