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


# fast since evaluate_greedy indexes only the project task folder (was ~15 min with all lm-eval tasks)
@pytest.mark.e2e
def test_lm_eval_runs_registered_model_on_project_task(data_dir, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm_efficiency_bench.adaptive_step.tasks import synthetic_task
    from llm_efficiency_bench.core.tiny import train_bpe_tokenizer
    from llm_efficiency_bench.adaptive_step.lm_eval_model import evaluate_greedy

    # a random tiny Llama saved to a folder: checks the plumbing (task YAML -> data dir -> model -> metric)
    tok = train_bpe_tokenizer("\n".join(p.question + p.solution for p in synthetic_task(200, 0, "train")), 300)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=2048, bos_token_id=0, eos_token_id=0,
                                         pad_token_id=0))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    res = evaluate_greedy(["bench_gsm8k_numeric"], folder=str(tmp_path / "m"), limit=2, data_dir=str(data_dir),
                          gen_kwargs="max_gen_toks=8")
    assert "bench_gsm8k_numeric" in res
    acc = res["bench_gsm8k_numeric"]["acc,none"]
    assert 0.0 <= acc <= 1.0
