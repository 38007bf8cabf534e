"""Chunked sink+band evaluation, SmolLM2-135M, cache 4+1020, chunk 512, in steady state (band full).

1. fp32: against token-by-token decoding through SinkCache. Same numbers (max |dNLL| <= 1e-4, asserted)
   and the speed ratio per token (`speedup`; goal >= 25x).
2. bf16: against a stock causal 2,048-token forward of the same model (LM head and cross-entropy in
   both), which attends to 1,024 keys per query on average, as the band does (`vs_stock`; goal >= 1.0),
   and the evaluator's band paths against each other: the default masked band computed in query blocks
   over the keys each block sees (`masked`), the same mask as one call over the whole chunk
   (`blocks_vs_one_call`), and the unmasked split pieces (`split_vs_masked`).

Every ratio is the median of per-round ratios (`llm_efficiency_bench.core.ratios.paired_rounds`: all sides once per
round, in alternating order), so it holds under load; `<key>_rounds` keeps the rounds. Whether a ratio
meets its goal is reported by `reproduce.bench_compare` (make bench), never asserted here: a goal is a
statement about an idle machine. Both tests read Moby-Dick from BENCH_DATA_DIR (`needs_data`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_efficiency_bench.core.ratios import paired_rounds, per_round_ratio, spread
from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.engine import QUERY_BLOCK, CachePolicy, ChunkedEvaluator
from llm_efficiency_bench.streaming_llm.rope import rope_of
from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache, cache_kwargs
from benchmarks.conftest import data_text

S, R, WARM, CHUNK, TOKENS_PER_CALL = 4, 1020, 1024, 512, 16
TEXT = "gutenberg/moby_dick.txt"

pytestmark = [pytest.mark.benchmark, pytest.mark.needs_data]


@pytest.fixture(scope="module")
def moby_dick() -> str:
    """Requested before the model fixtures, so that missing data fails before a model loads."""
    return data_text(TEXT)


def _ids(tok, text: str, n: int) -> torch.Tensor:
    ids = torch.tensor(tok(text[:max(400_000, 5 * n)]).input_ids)
    if ids.numel() < n:
        pytest.fail(f"{TEXT} has {ids.numel()} tokens, {n} needed: lower --bench-rounds", pytrace=False)
    return ids[:n]


class _Stream:
    """A chunked evaluator warmed past WARM tokens; each call scores the next CHUNK tokens."""

    def __init__(self, model, ids: torch.Tensor, split: bool = False, query_block: int | None = QUERY_BLOCK):
        self.ev = ChunkedEvaluator(adapter_for(model), CachePolicy(S, R), split=split, query_block=query_block)
        self.ids, self.pos, self.nll = ids, WARM, []
        self.ev.nll(ids[:WARM], ids[1:WARM + 1])

    def __call__(self) -> None:
        p, ids = self.pos, self.ids
        self.nll.append(self.ev.nll(ids[p:p + CHUNK], ids[p + 1:p + CHUNK + 1]))
        self.pos = p + CHUNK


def _record(benchmark, key: str, ratios: list[float], about: str) -> float:
    """Store the median of the per-round ratios as `key`, the rounds as `key_rounds`; returns the median."""
    med = spread(ratios).median
    benchmark.extra_info[key] = med
    benchmark.extra_info[f"{key}_rounds"] = ratios
    benchmark.extra_info.setdefault("about", {})[key] = about
    return med


@torch.no_grad()
def test_chunked_vs_token_by_token(benchmark, moby_dick, smollm2, rounds):
    model = smollm2.model
    ids = _ids(smollm2.tokenizer, moby_dick, WARM + CHUNK * (rounds + 3) + 1)
    # Token by token: dense prefill of the first WARM tokens (fits the cache: exact), then one token per step.
    cache = SinkCache(S, R, rope_of(model))
    model(ids[None, :WARM], position_ids=cache.position_ids(WARM), use_cache=True, **cache_kwargs(model, cache))
    ref, tok_pos = [], [WARM]

    def tokens():  # TOKENS_PER_CALL steps, so that one call is not dwarfed by a chunk call
        for t in range(tok_pos[0], tok_pos[0] + TOKENS_PER_CALL):
            logits = model(ids[None, t:t + 1], position_ids=cache.position_ids(1), use_cache=True,
                           **cache_kwargs(model, cache)).logits[0, -1]
            ref.append(F.cross_entropy(logits.float()[None], ids[t + 1:t + 2]))
        tok_pos[0] += TOKENS_PER_CALL

    chunked = _Stream(model, ids)
    t = paired_rounds({"token": tokens, "chunked": chunked}, rounds=rounds, warmup=1)
    token_ms = [ms / TOKENS_PER_CALL for ms in t["token"]]  # ms per token, per round
    chunked_ms = [ms / CHUNK for ms in t["chunked"]]
    per_round = per_round_ratio(token_ms, chunked_ms)
    speedup = _record(benchmark, "speedup", per_round,
                      "ms/token of token-by-token SinkCache decoding over the chunked evaluator's (fp32)")
    got, want = torch.cat(chunked.nll), torch.stack(ref)
    diff = (got[:want.numel()] - want).abs().max().item()  # both start at stream position WARM
    benchmark.extra_info.update({"max_abs_nll_diff": diff, "token_ms": spread(token_ms).median,
                                 "chunked_ms_per_token": spread(chunked_ms).median,
                                 "compared_tokens": want.numel(), "rounds": rounds,
                                 "threads": torch.get_num_threads()})
    benchmark.pedantic(chunked, rounds=1, iterations=1)
    print(f"\nfp32: token-by-token {spread(token_ms).median:.1f} ms/token, chunked "
          f"{spread(chunked_ms).median:.2f} ms/token, speedup {speedup:.1f}x (median of {rounds} rounds, "
          f"{min(per_round):.1f}-{max(per_round):.1f}), "
          f"max |dNLL| {diff:.2e} over {want.numel()} tokens")
    assert diff <= 1e-4


@torch.no_grad()
def test_chunked_vs_stock_forward(benchmark, moby_dick, smollm2_bf16, rounds):
    model = smollm2_bf16.model
    ids = _ids(smollm2_bf16.tokenizer, moby_dick, max(2048, WARM + CHUNK * (rounds + 3)) + 1)
    x = ids[None, :2048]

    def stock():  # the model's own causal forward: 2,048 tokens, LM head and cross-entropy included
        logits = model(x).logits[0].float()
        F.cross_entropy(logits[:-1], x[0, 1:])

    split, masked = _Stream(model, ids, split=True), _Stream(model, ids, split=False)
    one_call = _Stream(model, ids, split=False, query_block=None)
    t = paired_rounds({"split": split, "masked": masked, "one_call": one_call, "stock": stock},
                      rounds=rounds, warmup=1)
    # ms per token of each side, per round (the chunk paths score CHUNK tokens a call, stock 2,048)
    per_tok = {k: [ms / CHUNK for ms in t[k]] for k in ("split", "masked", "one_call")}
    per_tok["stock"] = [ms / 2048 for ms in t["stock"]]
    best = min(("split", "masked"), key=lambda k: spread(per_tok[k]).median)  # the faster exact path
    vs_stock = _record(benchmark, "vs_stock", per_round_ratio(per_tok["stock"], per_tok[best]),
                       f"tok/s of the chunked evaluator ({best} band) over a stock causal 2,048-token "
                       "forward (bf16)")
    split_vs_masked = _record(benchmark, "split_vs_masked", per_round_ratio(per_tok["masked"], per_tok["split"]),
                              "tok/s of the split band over the masked band (bf16)")
    blocks = _record(benchmark, "blocks_vs_one_call", per_round_ratio(per_tok["one_call"], per_tok["masked"]),
                     "tok/s of the masked band in query blocks over one masked call (bf16)")
    tok_s = {k: 1e3 / spread(v).median for k, v in per_tok.items()}
    diff = max((a - b).abs().max().item() for a, b in zip(split.nll, masked.nll))
    benchmark.extra_info.update({f"{k}_tok_s": v for k, v in tok_s.items()})
    benchmark.extra_info.update({"faster_exact_path": best, "bf16_max_abs_nll_diff_split_vs_masked": diff,
                                 "threads": torch.get_num_threads(), "rounds": rounds})
    benchmark.pedantic(split, rounds=1, iterations=1)
    print(f"\nbf16 tok/s: split {tok_s['split']:.0f}, masked {tok_s['masked']:.0f} "
          f"(one call {tok_s['one_call']:.0f}), stock-2048 {tok_s['stock']:.0f}; "
          f"{best}/stock {vs_stock:.2f}x, split/masked {split_vs_masked:.2f}x, blocks/one call {blocks:.2f}x "
          f"(medians of {rounds} rounds); bf16 |dNLL| split vs masked {diff:.1e}")
