"""Tiny random-weight models whose attention is peaky enough for sinks and positions to matter."""

from __future__ import annotations

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM


def tiny_llama(seed: int = 0, vocab: int = 101) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    m = LlamaForCausalLM(cfg).eval()
    _sharpen(m)
    return m


def tiny_neox(seed: int = 0, vocab: int = 101) -> GPTNeoXForCausalLM:
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                        num_attention_heads=4, max_position_embeddings=4096, rotary_pct=0.25)
    m = GPTNeoXForCausalLM(cfg).eval()
    _sharpen(m)
    return m


def _sharpen(model) -> None:
    # Random init gives near-uniform attention, under which wrong positions barely change the output.
    # Scaling the query/key projections makes attention peaky and position-sensitive.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("q_proj", "k_proj", "query_key_value")):
                p.mul_(4.0)
