"""The chunked sink+band evaluator equals the token-by-token SinkCache path (paper Sec. 3.2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator
from llm_efficiency_bench.streaming_llm.rope import rope_of
from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache, cache_kwargs
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
        kw = {} if window is None else {"position_ids": cache.position_ids(1, device=ids.device)}
        logits = model(ids[t:t + 1][None], use_cache=True, **cache_kwargs(model, cache), **kw).logits[0, -1]
        out.append(F.cross_entropy(logits.float()[None], ids[t + 1:t + 2]))
    return torch.stack(out)


def chunked(model, ids: torch.Tensor, n_sink: int, window: int | None, chunk: int,
            split: bool = False, query_block: int | None = 128) -> torch.Tensor:
    ev = ChunkedEvaluator(adapter_for(model), CachePolicy(n_sink, window), split=split, query_block=query_block)
    x, y = ids[:-1], ids[1:]
    return torch.cat([ev.nll(x[s:s + chunk], y[s:s + chunk]) for s in range(0, x.numel(), chunk)])


@pytest.mark.parametrize("make", [tiny_llama, tiny_neox], ids=["llama", "gpt_neox"])
@pytest.mark.parametrize("n_sink,window", [(4, 20), (1, 11), (0, 24), (0, None)])
def test_chunked_equals_token_by_token(make, n_sink, window):
    model = make()
    ids = torch.randint(0, 101, (121,))
    # rebase_every is tiny so that position re-basing inside SinkCache is exercised too.
    ref = token_by_token(model, ids, n_sink, window, rebase_every=40)
    # (chunk, split, query_block): blocks of 5 cut a 64-token chunk into 13 band blocks; None is one masked call.
    for chunk, split, qb in ((1, False, 128), (7, False, 128), (64, False, 5), (64, False, None), (7, True, 128),
                             (16, True, 128)):
        got = chunked(model, ids, n_sink, window, chunk, split, qb)
        assert (got - ref).abs().max().item() <= 1e-4, (chunk, split, qb, (got - ref).abs().max())


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
    from llm_efficiency_bench.streaming_llm.engine import sink_band_attention

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


def _band_mask(n: int, c: int, r: int, n_sink: int, window: int | None) -> torch.Tensor:
    """The engine's band rule (C, r + C) for queries n..n+C-1 over keys n-r..n+C-1 (the masked reference)."""
    t = torch.arange(n, n + c)[:, None]
    j = torch.arange(n - r, n + c)[None, :]
    band = (j <= t) & (j >= n_sink)
    return band & (j >= t - window) if window is not None else band


@pytest.mark.parametrize("hq,hkv", [(4, 2), (2, 2)], ids=["gqa", "mha"])
@pytest.mark.parametrize("n_sink", [3, 0], ids=["sinks", "no_sinks"])
@pytest.mark.parametrize("c,r,window", [(8, 0, 20), (8, 5, 20), (8, 15, 20), (8, 20, 20), (20, 20, 20),
                                        (1, 20, 20), (8, 13, None)],
                         ids=["first_band_chunk", "r_lt_R_rect", "r_lt_R_partial_tri", "r_eq_R", "chunk_eq_R",
                              "one_token", "dense"])
def test_split_attention_equals_masked(hq, hkv, n_sink, c, r, window):
    """The unmasked pieces (causal own keys, reversed-causal triangle, rectangles, sinks merged by
    log-sum-exp) equal one masked softmax over [sinks | band], in fp32, in every regime of the stream."""
    from llm_efficiency_bench.streaming_llm.engine import sink_band_attention
    from llm_efficiency_bench.streaming_llm.split_attention import split_band_attention

    g = torch.Generator().manual_seed(hash((hq, n_sink, c, r, window)) % 2**31)
    rnd = lambda *s, a=1.0: a * torch.randn(*s, generator=g)  # noqa: E731
    b, d = 2, 16
    n = n_sink + r + 7  # carried keys are never sinks: the band starts at n - r >= S
    qb, qs = rnd(b, hq, c, d, a=2.0), rnd(b, hq, c, d, a=2.0)  # peaky scores, so masking errors show
    kb, vb = rnd(b, hkv, r + c, d, a=2.0), rnd(b, hkv, r + c, d)
    ks, vs = rnd(b, hkv, n_sink, d, a=2.0), rnd(b, hkv, n_sink, d)
    band = _band_mask(n, c, r, n_sink, window)
    sink = torch.ones(c, n_sink, dtype=torch.bool)
    sinks = (qs, ks, vs) if n_sink else (None, None, None)
    ref = sink_band_attention(qb, kb, vb, band, sinks[0], ks, vs, sink, 0.3, fused=True)
    ref_portable = sink_band_attention(qb, kb, vb, band, sinks[0], ks, vs, sink, 0.3, fused=False)
    got = split_band_attention(qb, kb, vb, r, None if window is None else window - r, 0.3, *sinks)
    assert (got - ref).abs().max() < 1e-5
    assert (got - ref_portable).abs().max() < 1e-5


def test_split_attention_sees_the_window_edge():
    """Negative control: shifting the window by one key (off-by-one in the triangle) is detected."""
    from llm_efficiency_bench.streaming_llm.engine import sink_band_attention
    from llm_efficiency_bench.streaming_llm.split_attention import split_band_attention

    b, h, c, r, d = 1, 2, 8, 20, 16
    qb, kb, vb = 3 * torch.randn(b, h, c, d), 3 * torch.randn(b, h, r + c, d), torch.randn(b, h, r + c, d)
    got = split_band_attention(qb, kb, vb, r, 0, 0.3)
    wider = sink_band_attention(qb, kb, vb, _band_mask(30, c, r, 0, 21)[:, :], None, None, None, None, 0.3)
    assert (got - wider).abs().max() > 1e-3


@pytest.mark.parametrize("n_sink,window,chunk", [(4, 20, 7), (4, 20, 20), (0, 24, 5), (2, None, 9)])
def test_split_evaluator_equals_masked_evaluator(n_sink, window, chunk):
    """Whole streams (first chunk with the sinks, r < R, r = R): split and masked evaluators agree to 1e-5."""
    model = tiny_llama()
    ids = torch.randint(0, 101, (97,))
    split, masked = (chunked(model, ids, n_sink, window, chunk, split=sp) for sp in (True, False))
    assert (split - masked).abs().max() < 1e-5


@pytest.mark.parametrize("n_sink,window,chunk,block", [(4, 20, 32, 3), (4, 20, 17, 8), (0, 24, 40, 7), (2, None, 30, 4)])
def test_band_blocks_equal_one_masked_call(n_sink, window, chunk, block):
    """Whole streams (first chunk with the sinks, r < R, r = R): the band block by block (`band_blocks`)
    and as one masked call agree to 1e-5, and the blocks really skip keys (fewer columns than the chunk's)."""
    from llm_efficiency_bench.streaming_llm import engine

    model = tiny_llama()
    ids = torch.randint(0, 101, (131,))
    blocked, one_call = (chunked(model, ids, n_sink, window, chunk, query_block=qb) for qb in (block, None))
    assert (blocked - one_call).abs().max() < 1e-5
    if window is not None:  # steady state: each block of `block` queries sees at most window + block keys
        t, j = torch.arange(100, 100 + chunk), torch.arange(100 - window, 100 + chunk)
        band = (j[None] <= t[:, None]) & (j[None] >= t[:, None] - window)
        blocks = engine.band_blocks(band, 2, torch.float32, block)
        assert max(b.k1 - b.k0 for b in blocks) <= window + block < band.shape[1]
        assert sum(b.q1 - b.q0 for b in blocks) == chunk


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_nll_equals_cross_entropy_of_fp32_logits(dtype):
    """The row-blocked NLL equals the plain cross-entropy of the fp32 logits of the whole chunk."""
    from llm_efficiency_bench.streaming_llm.engine import token_nll

    model = tiny_llama().to(dtype)
    a = adapter_for(model)
    h = torch.randn(37, model.config.hidden_size, dtype=dtype)
    tg = torch.randint(0, model.config.vocab_size, (37,))
    want = F.cross_entropy(a.logits(h).float(), tg, reduction="none")
    for rows in (1, 5, 16, 64):
        assert (token_nll(a, h, tg, rows) - want).abs().max() < 1e-5
