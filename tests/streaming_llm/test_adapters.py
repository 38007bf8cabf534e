"""Chunked-evaluator adapters for Falcon, MPT and Qwen2.

Each architecture, as a tiny random fp32 model built from transformers' own classes, must give the same
next-token NLL through the chunked evaluator as through transformers' forward fed one token at a time
with `SinkCache` (<= 1e-4), on a stream that evicts (121 tokens, cache 4+20) and crosses re-bases.
Llama and GPT-NeoX are covered the same way in test_engine.py.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from transformers import (FalconConfig, FalconForCausalLM, GPT2Config, GPT2LMHeadModel, MptConfig, MptForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

import llm_efficiency_bench.streaming_llm.engine as engine
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.rope import rope_of
from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache, cache_kwargs
from tests.streaming_llm.test_engine import chunked, token_by_token

VOCAB = 101


def _randomise(model):
    """Peaky attention (scaled q/k, as tests/streaming_llm/models.py does) and non-trivial norms and biases,
    so that a wrong layout, norm or bias in an adapter changes the NLL."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("q_proj.weight", "k_proj.weight", "query_key_value", "Wqkv")):
                p.mul_(4.0)
            elif name.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif ("ln" in name or "norm" in name) and p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def tiny_falcon(**layout) -> FalconForCausalLM:
    torch.manual_seed(0)
    cfg = FalconConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=4096, bias=False, alibi=False, **layout)
    return _randomise(FalconForCausalLM(cfg))


def tiny_mpt() -> MptForCausalLM:
    torch.manual_seed(0)
    cfg = MptConfig(d_model=64, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=4096, vocab_size=VOCAB)
    return _randomise(MptForCausalLM(cfg))


def tiny_qwen2() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    return _randomise(Qwen2ForCausalLM(cfg))


MODELS = {
    # Falcon-7B: multi-query, parallel attention/MLP with one input norm.
    "falcon_multi_query": lambda: tiny_falcon(multi_query=True, new_decoder_architecture=False, parallel_attn=True),
    # Falcon-40B/180B: new decoder architecture, grouped KV heads, two input norms.
    "falcon_new_arch": lambda: tiny_falcon(new_decoder_architecture=True, num_kv_heads=2, parallel_attn=True),
    "falcon_new_arch_one_norm": lambda: tiny_falcon(new_decoder_architecture=True, num_kv_heads=2,
                                                    parallel_attn=True, num_ln_in_parallel_attn=1),
    # Multi-head, sequential residual (falcon-rw layout, here with RoPE).
    "falcon_multi_head_sequential": lambda: tiny_falcon(multi_query=False, new_decoder_architecture=False,
                                                        parallel_attn=False),
    "mpt": tiny_mpt,
    "qwen2": tiny_qwen2,
}


def _ids(n: int = 121) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(2))


CASES = [(name, (4, 20)) for name in MODELS] + [(name, (0, None)) for name in MODELS] + \
        [("mpt", (1, 11)), ("mpt", (0, 24))]


@pytest.mark.parametrize("name,policy", CASES, ids=[f"{n}-{p[0]}+{p[1]}" for n, p in CASES])
def test_chunked_equals_token_by_token(name, policy):
    model = MODELS[name]()
    ids = _ids()
    # 121 tokens through a 4+20 cache: evictions from token 24 on; re-bases every 40 tokens once full.
    ref = token_by_token(model, ids, *policy, rebase_every=40)
    for chunk in (7, 64):
        got = chunked(model, ids, *policy, chunk)
        assert (got - ref).abs().max().item() <= 1e-4, (chunk, (got - ref).abs().max())


@pytest.mark.parametrize("name", ["falcon_multi_query", "falcon_new_arch", "falcon_multi_head_sequential", "mpt"])
def test_token_path_before_eviction_equals_full_forward(name):
    """SinkCache through transformers' own forward, while nothing is evicted, equals one dense forward."""
    model = MODELS[name]()
    ids = _ids(60)
    with torch.no_grad():
        dense = F.cross_entropy(model(ids[None, :-1]).logits[0].float(), ids[1:], reduction="none")
    got = token_by_token(model, ids, 4, 200)
    assert (got - dense).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["falcon_multi_query", "mpt"])
def test_sink_cache_evicts_to_its_capacity(name):
    model = MODELS[name]()
    cache = SinkCache(4, 16, rope_of(model))
    sizes = []
    with torch.no_grad():
        for t in range(60):
            model(torch.tensor([[t % VOCAB]]), position_ids=cache.position_ids(1), use_cache=True,
                  **cache_kwargs(model, cache))
            sizes.append(cache.get_seq_length())
    assert max(sizes) == 20 and sizes[-1] == 20
    layer = cache.layers[0]
    assert layer.sink_k.shape[-2] == 4 and layer.recent_k.shape[-2] <= 17


def test_alibi_distances_negative_control(monkeypatch):
    """The MPT equality can fail: sinks at their true distance (t - i) instead of the cache offset
    (min(t, S+R) - i) change the NLL once the cache has evicted."""
    model = MODELS["mpt"]()
    ids = _ids()
    ref = token_by_token(model, ids, 4, 20)
    good = chunked(model, ids, 4, 20, 64)
    real = engine.chunk_bias
    monkeypatch.setattr(engine, "chunk_bias", lambda s, t, j, band, n, cap: real(s, t, j, band, n, 10**9))
    wrong = chunked(model, ids, 4, 20, 64)
    assert (good - ref).abs().max() <= 1e-4
    assert (wrong[:24] - ref[:24]).abs().max() <= 1e-4  # identical before the first eviction
    assert (wrong[30:] - ref[30:]).abs().max() > 1e-3


def test_rope_of_falcon_alibi_is_none_and_its_adapter_is_refused():
    torch.manual_seed(0)
    cfg = FalconConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, alibi=True)
    model = FalconForCausalLM(cfg).eval()
    assert rope_of(model) is None  # it builds a rotary module, but never uses it
    with pytest.raises(ConfigError) as err:
        adapter_for(model)
    assert err.value.setting == "model"


def test_unknown_architecture_names_the_model_setting():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)).eval()
    with pytest.raises(ConfigError, match="gpt2") as err:
        adapter_for(model)
    assert err.value.setting == "model"


def test_cache_is_passed_under_the_current_argument_name():
    """transformers 5.24 renamed `past_key_values` to `cache` (removal in 5.40); older 5.x only knows the old
    name. The name comes from the forward's signature; the current one must not warn."""
    model = MODELS["qwen2"]()
    cache = SinkCache(4, 20, rope_of(model))
    kw = cache_kwargs(model, cache)
    assert list(kw) == ["cache"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        with torch.no_grad():
            model(torch.tensor([[1]]), position_ids=cache.position_ids(1), use_cache=True, **kw)
    assert cache.get_seq_length() == 1  # the cache was used, not silently dropped

    class Old(torch.nn.Module):
        def forward(self, input_ids, past_key_values=None, **kwargs):
            return past_key_values

    assert list(cache_kwargs(Old(), cache)) == ["past_key_values"]
