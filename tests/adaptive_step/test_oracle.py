"""The exact step checker of the synthetic task (the oracle) and the MC-vs-oracle label comparison."""

from __future__ import annotations

import random

import pytest

from llm_efficiency_bench.adaptive_step import checkers
from llm_efficiency_bench.adaptive_step.oracle import label_confusion
from llm_efficiency_bench.adaptive_step.tasks import synthetic_task


def test_reference_solutions_pass_and_any_wrong_result_fails():
    probs = synthetic_task(200, seed=1, split="test")
    rng = random.Random(0)
    for p in probs:
        assert checkers.synthetic_solution_ok(p.solution)
        lines = p.solution.split("\n")
        # every prefix of a reference solution is on track, wherever it is cut
        for cut in range(1, len(p.solution)):
            assert checkers.synthetic_prefix_ok(p.solution[:cut])
        # one step's result off by a nonzero amount: that step, and the solution, are wrong
        k = rng.randrange(len(lines) - 1)
        a, rest = lines[k].rsplit("= ", 1)
        bad = lines[:k] + [f"{a}= {int(rest) + rng.choice([-2, -1, 1, 3])}"] + lines[k + 1:]
        assert checkers.synthetic_step_ok(bad[k]) is False
        assert not checkers.synthetic_solution_ok("\n".join(bad))
        assert not checkers.synthetic_prefix_ok("\n".join(bad[:k + 1]) + "\n")


def test_step_checker_cases():
    assert checkers.synthetic_step_ok("12 * 3 = 36") and checkers.synthetic_step_ok(" 7 - 7 = 0 ")
    assert checkers.synthetic_step_ok("12 * 3 = 35") is False
    assert checkers.synthetic_step_ok("#### 36") is None and checkers.synthetic_step_ok("so 12 * 3") is None
    assert not checkers.synthetic_solution_ok("3 + 4 = 7\n8 * 2 = 16\n#### 16")   # not chained
    assert not checkers.synthetic_solution_ok("3 + 4 = 7\n#### 8")               # answer line inconsistent
    assert not checkers.synthetic_solution_ok("3 + 4 = 7")                        # no answer line
    assert not checkers.synthetic_solution_ok("3 + 4 = 7\nthen more\n#### 7")    # text that is not a step
    # a prefix is good while it can still be completed into an exact, chained solution
    assert checkers.synthetic_prefix_ok("19 * 3 = 5") and not checkers.synthetic_prefix_ok("19 * 3 = 2")
    assert checkers.synthetic_prefix_ok("19 * 3 = 57\n5") and not checkers.synthetic_prefix_ok("19 * 3 = 57\n6")
    assert checkers.synthetic_prefix_ok("19 * 3 = 57\n57 - ") and not checkers.synthetic_prefix_ok("19 * 3 = 57\n56 - ")
    assert checkers.synthetic_prefix_ok("19 * 3 = 57\n#### 5")
    assert not checkers.synthetic_prefix_ok("19 * 3 = 57\n#### 6")
    assert checkers.synthetic_prefix_ok("19") and checkers.synthetic_prefix_ok("")
    assert not checkers.synthetic_prefix_ok("3 + 4 = 8\n8") and not checkers.synthetic_prefix_ok("#### 7")
    assert not checkers.synthetic_prefix_ok("3 + 4 = 7\n#### 8\n")


def test_label_confusion_rates():
    # 2 solutions; closing markers (last) are ignored
    oracle = [[1, 1, 0, 1], [1, 0, 0]]
    hard = [[1, 0, 1, 0], [1, 0, 1]]        # interior: MC (1,0,1 | 1,0) vs oracle (1,1,0 | 1,0)
    r = label_confusion(hard, oracle)
    assert r["markers"] == 5
    assert r["agreement"] == pytest.approx(3 / 5)
    assert r["fp_rate"] == pytest.approx(1 / 2)    # oracle bad: 2 markers, MC says good on one
    assert r["fn_rate"] == pytest.approx(1 / 3)    # oracle good: 3 markers, MC says bad on one
    soft = [[1.0, 0.25, 0.5, 0.0], [0.75, 0.0, 1.0]]
    assert label_confusion(soft, oracle) == r       # soft >= 0.5 counts as good: same verdicts here
    with pytest.raises(ValueError):
        label_confusion([[1, 0]], [[1, 1, 0]])


def test_question_reading_oracle_rejects_a_consistent_misread():
    """With the question's reference, a step that copies a wrong operand is wrong even when its arithmetic
    and chaining are right (the arithmetic-only oracle accepts it); every prefix of the reference passes."""
    probs = synthetic_task(100, seed=2, split="val")
    for p in probs:
        ref = p.solution
        assert checkers.synthetic_solution_ok(ref, ref)
        assert checkers.synthetic_solution_ok(ref.replace(" ", "  "), ref)   # spacing is not a step error
        for cut in range(len(ref) + 1):
            assert checkers.synthetic_prefix_ok(ref[:cut], ref), ref[:cut]
        lines = ref.split("\n")
        a, op, b, _, c = lines[0].split()
        b2 = int(b) + 1
        v = {"+": int(a) + b2, "-": int(a) - b2, "*": int(a) * b2}[op]
        misread = f"{a} {op} {b2} = {v}\n#### {v}"                       # exact arithmetic, wrong operand
        assert checkers.synthetic_solution_ok(misread) and not checkers.synthetic_solution_ok(misread, ref)
        assert checkers.synthetic_prefix_ok(f"{a} {op} {b2}")
        assert not checkers.synthetic_prefix_ok(f"{a} {op} {b2}", ref)
        assert not checkers.synthetic_solution_ok(ref + "\n1 + 1 = 2", ref)     # text after the answer
        assert not checkers.synthetic_prefix_ok(ref + "\n5", ref)
    # the validation split is its own seed salt: apart from chance collisions of short random problems, its
    # questions are not the PRM-data (dev) or test questions
    qs = lambda split: {p.question for p in synthetic_task(300, seed=0, split=split)}  # noqa: E731
    assert len(qs("val") & qs("test")) < 6 and len(qs("val") & qs("dev")) < 6 and qs("val") != qs("test")


def test_bad_selection_variant_names_the_setting():
    from llm_efficiency_bench.core.errors import ConfigError
    from llm_efficiency_bench.core.validate import validate
    from tests.conftest import compose

    for over, word in (("+select.variants.x.bogus=1", "bogus"), ("select.variants.pair.loss=huber", "loss")):
        cfg = compose("adaptive_step", ["experiment=bon", "profile=smoke", over])
        with pytest.raises(ConfigError, match=word) as e:
            validate("adaptive_step", cfg)
        assert "select.variants" in str(e.value)
