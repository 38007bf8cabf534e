"""Code tasks (HumanEval, MBPP) through the pipeline: problems, prompts, completion extraction, sandboxed checks.

A scripted stand-in policy (its greedy output for each prompt is fixed text: the canonical solution, or a wrong
one) runs through the pipeline's own greedy decoding (`policy.greedy_accuracy` -> `generation.sample` ->
`tasks.CodeTask.check_batch`), so the answers are checked exactly as the pipeline checks sampled solutions.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from llm_efficiency_bench.adaptive_step import policy
from llm_efficiency_bench.adaptive_step.tasks import make_task
from tests.conftest import compose


class ScriptedLM(torch.nn.Module):
    """A 'policy' whose greedy continuation of each prompt is a given token sequence (then end-of-text).

    Speaks the interface `generation.sample` uses: a prefill call with the left-padded prompts, then one
    call per step with `cache=` the object the previous call returned as `.cache`, whose
    `batch_select_indices(idx)` keeps the rows `idx` (rows sharing a prompt, rows that finished).
    """

    class State(dict):
        def batch_select_indices(self, idx):
            self["rows"] = [self["rows"][int(i)] for i in idx]

    def __init__(self, scripts: dict[tuple[int, ...], list[int]], vocab: int, eos: int):
        super().__init__()
        self.scripts, self.vocab, self.eos = scripts, vocab, eos
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device / dtype

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=False, **_):
        B, L = input_ids.shape
        if cache is None:  # prefill: remember each row's prompt without its left padding
            state = self.State(rows=[tuple(int(t) for t, m in zip(input_ids[i], attention_mask[i]) if m)
                                     for i in range(B)], step=0)
        else:
            state = self.State(rows=cache["rows"], step=cache["step"] + 1)
        logits = torch.full((B, L, self.vocab), -30.0)           # (B, L, V)
        for i, prompt in enumerate(state["rows"]):
            script = self.scripts[prompt] + [self.eos]
            logits[i, -1, script[min(state["step"], len(script) - 1)]] = 30.0
        return SimpleNamespace(logits=logits, cache=state)


def _policy(cfg, probs, outputs: list[str], style: str) -> policy.Policy:
    from llm_efficiency_bench.core.tiny import train_bpe_tokenizer

    task = make_task(cfg)
    prompts = [task.prompt(p, style) for p in probs]
    tok = train_bpe_tokenizer("\n".join(prompts + outputs), 300)
    scripts = {tuple(tok(pr).input_ids): tok(out).input_ids for pr, out in zip(prompts, outputs)}
    model = ScriptedLM(scripts, len(tok), tok.eos_token_id)
    return policy.Policy(model, tok, "scripted", tok.eos_token_id, 0, 0, 0, Path("."), 0.0, style, task)


def _cfg(task: str, extra: list[str] = ()):
    return compose("adaptive_step", ["experiment=bon", "profile=smoke", f"task={task}", "pipeline.max_new=700",
                                     "pipeline.batch=8", "pipeline.progress=false", *extra])


def _greedy_accuracy(cfg, pol, probs) -> float:
    return policy.greedy_accuracy(pol, probs, int(cfg.pipeline.max_new), int(cfg.pipeline.batch), False, print)


def test_code_task_configs():
    cfg = _cfg("humaneval")
    assert cfg.task.name == "humaneval" and cfg.tvd.threshold == pytest.approx(0.28)
    assert cfg.task.code_timeout == pytest.approx(3.0)
    assert compose("adaptive_step", ["experiment=tvd", "profile=smoke"]).tvd.threshold == pytest.approx(0.55)
    code = compose("adaptive_step", ["experiment=bon", "profile=cpu_code"])
    assert code.model.name == "smollm2_135m" and code.task.name == "humaneval" and code.model.prompt_style == "qa"
    assert compose("adaptive_step", ["experiment=bon", "profile=cpu_code", "task=mbpp"]).task.name == "mbpp"


@pytest.mark.e2e
def test_humaneval_scripted_policy_checked_in_sandbox(data_dir):
    cfg = _cfg("humaneval")
    probs = make_task(cfg).load("test", 3)
    assert [p.uid for p in probs] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert make_task(cfg).load("prm", 2)[-1].uid == "HumanEval/163"
    # `qa` (instruct) style: the prompt opens a ```python block; the answer is the whole function, fence, prose
    prompt = make_task(cfg).prompt(probs[0], "qa")
    assert probs[0].meta["problem"]["prompt"] in prompt and prompt.endswith("```python\n")
    def full(p):  # the canonical function written out as an instruct model would
        hp = p.meta["problem"]
        return hp["prompt"][hp["prompt"].index("def " + hp["entry_point"]):] + p.solution
    outs = [full(probs[0]) + "```\nThis checks every pair.", full(probs[1]) + "```", "    return []\n```"]
    pol = _policy(cfg, probs, outs, "qa")
    assert _greedy_accuracy(cfg, pol, probs) == pytest.approx(2 / 3)  # two right, one wrong
    # `plain` (base model) style: the prompt is the signature + docstring, the output the raw body
    outs = [p.solution + "\n\ndef unrelated():\n    pass\n" for p in probs]
    pol = _policy(cfg, probs, outs, "plain")
    assert make_task(cfg).prompt(probs[1], "plain") == probs[1].meta["problem"]["prompt"]
    assert _greedy_accuracy(cfg, pol, probs) == pytest.approx(1.0)
    # majority vote on code: the same program with other comments / layout votes together
    a = make_task(cfg).answer_key(probs[0].solution, probs[0])
    b = make_task(cfg).answer_key("    # same thing\n" + probs[0].solution.replace(" = ", "=") + "\n\n", probs[0])
    assert a is not None and a == b and a != make_task(cfg).answer_key("    return True\n", probs[0])
    assert make_task(cfg).answer_key("    return (\n", probs[0]) is None


def test_mbpp_scripted_policy_checked_in_sandbox(data_dir):
    cfg = _cfg("mbpp")
    probs = make_task(cfg).load("test", 2)
    assert [p.uid for p in probs] == ["MBPP/11", "MBPP/12"]
    assert make_task(cfg).load("prm", 1)[0].uid == "MBPP/601"   # policy / PRM data from the train split
    prompt = make_task(cfg).prompt(probs[0], "plain")
    assert probs[0].question in prompt and "assert remove_Occ" in prompt
    outs = [probs[0].solution + "\n\nprint(remove_Occ('hello', 'l'))\n",     # trailing harness is cut
            f"def {probs[1].answer}(*a):\n    return None\n"]                  # wrong
    pol = _policy(cfg, probs, outs, "plain")
    assert _greedy_accuracy(cfg, pol, probs) == pytest.approx(0.5)


@pytest.mark.e2e
def test_generated_code_runs_in_another_process_with_time_limit(data_dir):
    cfg = _cfg("humaneval", ["task.code_timeout=1.0"])
    prob = make_task(cfg).load("test", 1)[0]
    pid = os.getpid()
    here = (f"    assert __import__('os').getpid() != {pid}\n"       # passes only outside this process
            f"    __import__('builtins').__dict__['_adaptive_step_ran_here'] = True\n" + prob.solution)
    not_here = f"    assert __import__('os').getpid() == {pid}\n" + prob.solution   # passes only in this process
    loop = "    while True:\n        pass\n"
    res = make_task(cfg).check_batch([here, not_here, loop, prob.solution], [prob] * 4)
    assert res == [True, False, False, True]
    assert not hasattr(builtins, "_adaptive_step_ran_here")             # nothing ran in the test's interpreter
    assert make_task(cfg).check(loop, prob) is False                      # the time limit is the setting (1 s)
