"""Sampling loop (left padding + KV cache) and PRM label scoring on a random tiny Llama."""

from __future__ import annotations

import pytest

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llm_efficiency_bench.adaptive_step.generation import label_scores, sample


def _model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.e2e  # generates row by row and batched
def test_batched_greedy_matches_single_rows_and_confidence_is_prob():
    m = _model()
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    batched = sample(m, prompts, 6, eos_id=0, greedy=True)
    for p, b in zip(prompts, batched):
        single = sample(m, [p], 6, eos_id=0, greedy=True)[0]
        assert single.ids == b.ids
        assert torch.allclose(torch.tensor(single.conf), torch.tensor(b.conf), atol=1e-5)
        # confidence = probability of the chosen token under a full (uncached) forward pass
        if b.ids:
            with torch.no_grad():
                probs = torch.softmax(m(input_ids=torch.tensor([p])).logits[0, -1], -1)
            assert abs(probs[b.ids[0]].item() - b.conf[0]) < 1e-5


def test_sampling_reproducible_with_generator():
    m = _model()
    a = sample(m, [[3, 4]] * 4, 8, 0, 1.0, torch.Generator().manual_seed(1))
    b = sample(m, [[3, 4]] * 4, 8, 0, 1.0, torch.Generator().manual_seed(1))
    c = sample(m, [[3, 4]] * 4, 8, 0, 1.0, torch.Generator().manual_seed(2))
    assert [s.ids for s in a] == [s.ids for s in b]
    assert [s.ids for s in a] != [s.ids for s in c]


def test_label_scores_softmax_over_two_label_tokens():
    m = _model()
    seqs = [[1, 2, 3, 39], [4, 39, 5, 6, 39]]
    pos = [[3], [1, 4]]
    out = label_scores(m, seqs, pos, good_id=37, bad_id=38, pad_id=0)
    with torch.no_grad():
        lg = m(input_ids=torch.tensor([seqs[1]])).logits[0]
    want = torch.softmax(lg[[1, 4]][:, [37, 38]], -1)[:, 0]
    assert len(out[0]) == 1 and torch.allclose(torch.tensor(out[1]), want, atol=1e-5)
