"""SinkCache precision over long streams.

The token-by-token path keeps recent keys rotated at the positions they were given until a re-base, and
fp32 RoPE angles p * inv_freq lose precision in proportion to p. With re-bases every 512 tokens
(`sink_cache.REBASE_EVERY`) positions stay below capacity + 512 however long the stream, and the token path
must equal the exact chunked path to 1e-4 deep into a stream; with positions at 64K it does not (control).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator
from llm_efficiency_bench.streaming_llm.rope import Rope, rope_of
from llm_efficiency_bench.streaming_llm.sink_cache import REBASE_EVERY, SinkCache, cache_kwargs

S, R = 4, 124


def test_positions_stay_bounded_over_a_64k_stream():
    cache = SinkCache(S, R, Rope(torch.ones(8), rotary_dim=16))
    top = max(int(cache.position_ids(1)[0, -1]) for _ in range(65536))
    assert cache.seen + 1 == 65536
    assert top < S + R + REBASE_EVERY  # without re-basing it would be 65,535


def _sensitive_tiny_llama() -> LlamaForCausalLM:
    """2 layers, 32-dim heads; peaky attention and logits so that small score errors show in the NLL."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(4.0)
            elif "v_proj" in name or "lm_head" in name:
                p.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def deep_stream():
    """A chunked run to token 65,536 of a stream, its state there, and its exact NLL for the next 600."""
    model = _sensitive_tiny_llama()
    ids = torch.randint(0, 101, (65536 + 641,), generator=torch.Generator().manual_seed(3))
    ev = ChunkedEvaluator(adapter_for(model), CachePolicy(S, R))
    start = 65536
    for s in range(0, start, 512):
        ev.forward_chunk(ids[None, s:s + 512])
    state = copy.deepcopy(ev.state)
    ref = torch.cat([ev.nll(ids[s:s + 128], ids[s + 1:s + 129]) for s in range(start, start + 600, 128)])
    return model, ids, start, state, ref[:600]


def _token_path(model, cache: SinkCache, ids: torch.Tensor, start: int, n: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for t in range(start, start + n):
            logits = model(ids[None, t:t + 1], position_ids=cache.position_ids(1), use_cache=True,
                           **cache_kwargs(model, cache)).logits[0, -1]
            out.append(F.cross_entropy(logits.float()[None], ids[t + 1:t + 2]))
    return torch.stack(out)


@pytest.mark.e2e
def test_token_path_equals_chunked_deep_in_a_stream(deep_stream):
    """From token 65,536 on, across a re-base (after 512 tokens), SinkCache stays within 1e-4."""
    model, ids, start, state, ref = deep_stream
    cache = SinkCache.from_stream_state(state, rope_of(model), S, R)
    got = _token_path(model, cache, ids, start, 600)
    assert cache.base > start  # it re-based on the way
    assert (got - ref).abs().max().item() <= 1e-4


@pytest.mark.e2e
def test_long_positions_break_it_negative_control(deep_stream):
    """Keys at their true stream positions (~64K, no re-base) drift past 1e-4: the test above is sensitive."""
    model, ids, start, state, ref = deep_stream
    cache = SinkCache.from_stream_state(state, rope_of(model), S, R, rebase_every=10**9, base=0)
    got = _token_path(model, cache, ids, start, 120)
    assert (got - ref[:120]).abs().max().item() > 1e-4
