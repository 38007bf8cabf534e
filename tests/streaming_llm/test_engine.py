"""The chunked sink+band evaluator equals the token-by-token SinkCache path (paper Sec. 3.2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from bench.streaming_llm.adapters import adapter_for
from bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator
from bench.streaming_llm.rope import rope_of
from bench.streaming_llm.sink_cache import SinkCache, cache_kwargs
from tests.streaming_llm.models import tiny_llama, tiny_neox


@torch.no_grad()
def token_by_token(model, ids: torch.Tensor, n_sink: int, window: int | None, rope="model",
                   rebase_every: int | None = None) -> torch.Tensor:
    """Reference: transformers' own forward, one token per call, through SinkCache (or a dense cache)."""
    if window is None:
        cache = DynamicCache()
    else:
        kw = {} if rebase_every is None else {"rebase_every": rebase_every}
        cache = SinkCache(n_sink, window, rope_of(model) if rope == "model" else rope, **kw)
    out = []
    for t in range(ids.numel() - 1):
        kw = {} if window is None else {"position_ids": cache.position_ids(1)}
        logits = model(ids[t:t + 1][None], use_cache=True, **cache_kwargs(model, cache), **kw).logits[0, -1]
        out.append(F.cross_entropy(logits.float()[None], ids[t + 1:t + 2]))
    return torch.stack(out)


def chunked(model, ids: torch.Tensor, n_sink: int, window: int | None, chunk: int) -> torch.Tensor:
    ev = ChunkedEvaluator(adapter_for(model), CachePolicy(n_sink, window))
    x, y = ids[:-1], ids[1:]
    return torch.cat([ev.nll(x[s:s + chunk], y[s:s + chunk]) for s in range(0, x.numel(), chunk)])


@pytest.mark.parametrize("make", [tiny_llama, tiny_neox], ids=["llama", "gpt_neox"])
@pytest.mark.parametrize("n_sink,window", [(4, 20), (1, 11), (0, 24), (0, None)])
def test_chunked_equals_token_by_token(make, n_sink, window):
    model = make()
    ids = torch.randint(0, 101, (121,))
    # rebase_every is tiny so that position re-basing inside SinkCache is exercised too.
    ref = token_by_token(model, ids, n_sink, window, rebase_every=40)
    for chunk in (1, 7, 64):
        got = chunked(model, ids, n_sink, window, chunk)
        assert (got - ref).abs().max().item() <= 1e-4, (chunk, (got - ref).abs().max())


def test_positions_matter_negative_control():
    """The equality test can fail: placing sinks at their true positions instead of the cache offset
    (rope=None disables the re-rotation) changes the NLL once the cache has evicted."""
    model = tiny_llama()
    ids = torch.randint(0, 101, (120,))
    ref = token_by_token(model, ids, 4, 20)
    wrong = token_by_token(model, ids, 4, 20, rope=None)
    assert (wrong[:24] - ref[:24]).abs().max() < 1e-5  # identical before the first eviction
    assert (wrong[30:] - ref[30:]).abs().max() > 1e-3
    window = chunked(model, ids, 0, 24, 16)
    assert (window[30:] - ref[30:]).abs().max() > 1e-3  # sinks change the result: the test is sensitive


def test_sink_cache_memory_is_bounded():
    model = tiny_llama()
    cache = SinkCache(4, 16, rope_of(model))
    sizes = []
    with torch.no_grad():
        for t in range(80):
            model(torch.tensor([[t % 101]]), position_ids=cache.position_ids(1), use_cache=True,
                  **cache_kwargs(model, cache))
            sizes.append(cache.get_seq_length())
    assert max(sizes) == 20 and sizes[-1] == 20
    assert cache.nbytes() <= 2 * 3 * 21 * 2 * 32 * 4  # layers*(k,v)*tokens*heads*dim*bytes


def test_multi_token_call_that_would_evict_is_refused():
    cache = SinkCache(2, 6, None)
    cache.position_ids(8)  # fits: 8 tokens into a capacity of 8
    with pytest.raises(ValueError, match="one at a time"):
        cache.position_ids(2)


def test_cache_state_is_flat_over_a_long_stream():
    model = tiny_llama()
    ev = ChunkedEvaluator(adapter_for(model), CachePolicy(4, 28))
    ids = torch.randint(0, 101, (651,))
    sizes = []
    for s in range(0, 599, 50):
        ev.nll(ids[s:s + 50], ids[s + 1:s + 51])
        sizes.append(ev.state.nbytes())
    assert len(set(sizes[1:])) == 1


@pytest.mark.parametrize("with_sinks", [True, False])
def test_portable_attention_path_equals_fused(with_sinks):
    """The GPU path (one SDPA over [0|k_sink] and [k_band|0]) equals the CPU flash + LSE merge."""
    from bench.streaming_llm.engine import sink_band_attention

    b, hq, hkv, c, k, s, d = 1, 4, 2, 9, 20, 3, 16
    qb, qs = torch.randn(b, hq, c, d), torch.randn(b, hq, c, d)
    kb, vb = torch.randn(b, hkv, k, d), torch.randn(b, hkv, k, d)
    ks, vs = torch.randn(b, hkv, s, d), torch.randn(b, hkv, s, d)
    band = torch.rand(c, k) > 0.4
    band[:3] = False  # queries that are sinks themselves: no band key
    band[3:, 0] = True
    sink = torch.ones(c, s, dtype=torch.bool)
    args = (qb, kb, vb, band, qs if with_sinks else None, ks, vs, sink, 0.25)
    if not with_sinks:
        band[:3, 1] = True  # without sinks every query needs a key
    fused = sink_band_attention(*args, fused=True)
    portable = sink_band_attention(*args, fused=False)
    assert (fused - portable).abs().max() < 1e-5
