"""Chunked sink+band evaluation vs token-by-token through SinkCache, SmolLM2-135M, cache 4+1020.

Same numbers (max |dNLL| <= 1e-4, fp32) and the speed ratio per evaluated token (issue target >= 20x).
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from bench.streaming_llm.adapters import adapter_for
from bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator
from bench.streaming_llm.rope import rope_of
from bench.streaming_llm.sink_cache import SinkCache, cache_kwargs

S, R, WARM, TIMED, CHUNK = 4, 1020, 1024, 64, 512

pytestmark = pytest.mark.benchmark


def _ids(tok) -> torch.Tensor:
    from bench.core.paths import data_dir

    try:
        text = (data_dir(None) / "gutenberg" / "moby_dick.txt").read_text(encoding="utf-8-sig")
    except Exception:
        pytest.skip("needs BENCH_DATA_DIR with gutenberg/")
    return torch.tensor(tok(text[:200_000]).input_ids[: WARM + CHUNK + 1])


@torch.no_grad()
def test_chunked_vs_token_by_token(benchmark, smollm2):
    model, ids = smollm2.model, _ids(smollm2.tokenizer)
    # Token by token: dense prefill of the first WARM tokens (fits the cache: exact), then one token per call.
    cache = SinkCache(S, R, rope_of(model))
    model(ids[None, :WARM], position_ids=cache.position_ids(WARM), use_cache=True, **cache_kwargs(model, cache))
    ref, times = [], []
    for t in range(WARM, WARM + TIMED):
        t0 = time.perf_counter()
        logits = model(ids[None, t:t + 1], position_ids=cache.position_ids(1), use_cache=True,
                       **cache_kwargs(model, cache)).logits[0, -1]
        times.append(time.perf_counter() - t0)
        ref.append(F.cross_entropy(logits.float()[None], ids[t + 1:t + 2]))
    per_token_ref = sorted(times)[len(times) // 2]

    def chunked():
        ev = ChunkedEvaluator(adapter_for(model), CachePolicy(S, R))
        ev.nll(ids[:WARM], ids[1:WARM + 1])
        t0 = time.perf_counter()
        nll = ev.nll(ids[WARM:WARM + CHUNK], ids[WARM + 1:WARM + CHUNK + 1])
        return nll, (time.perf_counter() - t0) / CHUNK

    results = benchmark.pedantic(lambda: [chunked() for _ in range(3)], rounds=1, iterations=1)
    nll = results[0][0]
    per_token_chunked = sorted(r[1] for r in results)[1]
    diff = (nll[:TIMED] - torch.stack(ref)).abs().max().item()
    speedup = per_token_ref / per_token_chunked
    benchmark.extra_info.update({"max_abs_nll_diff": diff, "token_ms": per_token_ref * 1e3,
                                 "chunked_ms_per_token": per_token_chunked * 1e3, "speedup": speedup})
    print(f"\ntoken-by-token {per_token_ref * 1e3:.1f} ms/token, chunked {per_token_chunked * 1e3:.2f} ms/token, "
          f"speedup {speedup:.1f}x, max |dNLL| {diff:.2e}")
    assert diff <= 1e-4
    assert speedup >= 20
