"""lm-eval integration: the project's task YAMLs load from the data directory and score with the checkers."""

from __future__ import annotations

import pytest


@pytest.mark.e2e
def test_task_helpers_score_gold_answers(data_dir):
    from llm_efficiency_bench.adaptive_step.lm_eval_tasks import utils

    g = utils.load_gsm8k(str(data_dir))
    assert len(g["test"]) == 1319 and len(g["train"]) == 7473
    doc = g["test"][0]
    assert utils.process_gsm8k(doc, [doc["answer"]]) == {"acc": 1.0}
    assert utils.process_gsm8k(doc, ["#### 0"]) == {"acc": 0.0}
    m = utils.load_math500(str(data_dir))["test"]
    assert len(m) == 500
    assert utils.process_math500(m[0], [m[0]["solution"]]) == {"acc": 1.0}
    assert utils.process_math500(m[0], ["\\boxed{7}"]) == {"acc": 0.0}


def _tiny_model(folder):
    """A random tiny Llama and its tokenizer saved to `folder`: enough for the plumbing (task YAML -> data
    dir -> model -> metric), not for accuracy."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm_efficiency_bench.adaptive_step.tasks import synthetic_task
    from llm_efficiency_bench.core.tiny import train_bpe_tokenizer

    tok = train_bpe_tokenizer("\n".join(p.question + p.solution for p in synthetic_task(200, 0, "train")), 300)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=2048, bos_token_id=0, eos_token_id=0,
                                         pad_token_id=0))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.e2e  # runs lm-eval; quick because evaluate_greedy indexes only the project's task folder
def test_lm_eval_runs_registered_model_on_project_task(data_dir, tmp_path):
    import json

    from llm_efficiency_bench.adaptive_step.lm_eval_model import evaluate_greedy

    raw = tmp_path / "out" / "lm_eval.json"
    res = evaluate_greedy(["bench_gsm8k_numeric"], folder=str(_tiny_model(tmp_path / "m")), limit=2,
                          data_dir=str(data_dir), gen_kwargs="max_gen_toks=8", output_path=raw)
    assert "bench_gsm8k_numeric" in res
    acc = res["bench_gsm8k_numeric"]["acc,none"]
    assert 0.0 <= acc <= 1.0
    # lm-eval's own results JSON: the same results, with the task config and versions it ran
    doc = json.loads(raw.read_text())
    assert doc["results"] == json.loads(json.dumps(res))
    assert doc["configs"]["bench_gsm8k_numeric"]["task"] == "bench_gsm8k_numeric"
    assert "bench_gsm8k_numeric" in doc["versions"] and doc["n-samples"]["bench_gsm8k_numeric"]["effective"] == 2


@pytest.mark.e2e  # runs lm-eval
def test_greedy_keeps_lm_eval_json_beside_the_record(data_dir, tmp_path, monkeypatch):
    import json

    from omegaconf import OmegaConf

    from llm_efficiency_bench.adaptive_step import greedy as G
    from llm_efficiency_bench.adaptive_step import lm_eval_model
    from llm_efficiency_bench.core.records import Record
    from llm_efficiency_bench.core.runner import RunContext

    folder = str(_tiny_model(tmp_path / "m"))
    real_load = lm_eval_model._load
    monkeypatch.setattr(lm_eval_model, "_load", lambda model_config, _folder, dtype: real_load(None, folder, dtype))
    cfg = OmegaConf.create({"data_dir": str(data_dir), "experiment": {"batch": 2, "policies": [
        {"name": "rand/tiny", "source": "model_config", "model_config": "unused", "tasks": ["bench_gsm8k_numeric"],
         "limit": 2}]}})
    out = tmp_path / "run"
    ctx = RunContext(cfg, "adaptive_step", "greedy", "test", out, Record("adaptive_step", "greedy", "test"))
    G.greedy(ctx)
    assert ctx.record.artifacts["lm_eval"] == ["lm_eval_rand_tiny.json"]
    doc = json.loads((out / "lm_eval_rand_tiny.json").read_text())
    metric = ctx.record.to_dict()["metrics"]["greedy_acc.rand/tiny.bench_gsm8k_numeric"]["value"]
    assert metric == 100 * doc["results"]["bench_gsm8k_numeric"]["acc,none"]
    with pytest.raises(FileExistsError):  # a second run into the same folder never overwrites it
        G.greedy(ctx)
