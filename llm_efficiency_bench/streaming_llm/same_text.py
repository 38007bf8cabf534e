"""Fig. 5 against the same text (experiment `ppl_4m`): each sampled book's first T tokens inside the long
stream against the same tokens from an empty cache, with the same S + R policy.

The books are picked before the stream is evaluated (`pick_books`), so a setting the data cannot satisfy
fails in seconds; `in_stream_vs_fresh` then scores them and writes the ratios, their trend over the stream
and `fig5_books.csv`.
"""

from __future__ import annotations

from typing import Callable

import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.streaming_llm.engine import CachePolicy
from llm_efficiency_bench.streaming_llm.ppl import EvalTiming, Stream, ppl, sample_books
from llm_efficiency_bench.streaming_llm.stats import ols_trend


def pick_books(ctx: RunContext, stream: Stream) -> tuple[int, int | None, list[int]]:
    """Validate `experiment.fresh_tokens` / `fresh_books` against the stream (before it is evaluated) and
    pick the books: returns (T, count, book indices)."""
    e = ctx.cfg.experiment
    T = int(e.fresh_tokens)
    n0 = stream.doc_span(0)[1] - stream.doc_span(0)[0]
    if n0 < T:
        raise ConfigError("experiment.fresh_tokens", f"{T} fresh tokens per book, but the first book "
                          f"({stream.doc_names[0]}) has {n0:,} in the stream; choose 1 <= T <= {n0:,}")
    count = None if e.get("fresh_books") is None else int(e.fresh_books)  # >= 3: the schema's range
    books = sample_books(stream, T, count, int(ctx.cfg.seed))
    if len(books) < 3:
        raise ConfigError("experiment.fresh_tokens", f"only {len(books)} book(s) have {T:,} tokens in the "
                          "stream; lower experiment.fresh_tokens or lengthen the stream")
    return T, count, books


def in_stream_vs_fresh(ctx: RunContext, model_name: str, pol: CachePolicy, stream: Stream, nll: torch.Tensor,
                       score: Callable[[Stream, str, EvalTiming], torch.Tensor]) -> None:
    """Fig. 5 against the same text: book k's first T tokens inside the stream / from an empty cache.

    Content cancels in the ratio, so what is left is the book's position in the stream: a cache that
    degrades over a long stream raises the ratio of late books. Book 0 is the control: its first T tokens
    open the stream, so both runs are the same computation and its ratio is exactly 1; it is kept out of
    the headline statistics (median, max, trend).

    Args:
        nll: (N,) per-token NLL of the whole stream under `pol`.
        score: evaluates a stream from an empty cache under `pol` (checkpointed, tagged), filling the timing.
    """
    T, count, books = pick_books(ctx, stream)
    n = nll.numel()
    fresh_timing = EvalTiming()
    rows, ratios, xs = [], [], []
    for i, k in enumerate(books):
        name = stream.doc_names[k]
        start, end = stream.doc_span(k)
        ctx.log(f"fresh book {i + 1}/{len(books)}: {name} (stream tokens {start:,}..{start + T:,})")
        leg = EvalTiming()
        nll_f = score(stream.book_prefix(k, T), f"fresh_{k:03d}_{name}", leg)
        fresh_timing.earlier_s += leg.earlier_s
        fresh_timing.leg_s += leg.leg_s
        p_in, p_fr = ppl(nll[start:start + T]), ppl(nll_f)
        ratio = p_in / p_fr
        ctx.metric(f"ppl.in_stream.{name}", p_in, "ppl", "lower", note=f"first {T:,} tokens, at stream token {start:,}")
        ctx.metric(f"ppl.fresh.{name}", p_fr, "ppl", "lower", note=f"the same {T:,} tokens from an empty cache")
        ctx.metric(f"ppl_ratio.{name}", ratio, "x", "none", note="in-stream / fresh" + (" (control)" if i == 0 else ""))
        if i > 0:
            ratios.append(ratio)
            xs.append((start + T / 2) / 1e6)
        rows.append((k, {"role": "control" if i == 0 else "sample", "compared_tokens": T, "ppl_in_stream": p_in,
                         "ppl_fresh": p_fr, "ppl_ratio": ratio}))
    picked = dict(rows)
    table = []
    for k, name in enumerate(stream.doc_names):
        start, end = stream.doc_span(k)
        table.append({"book": name, "start_token": start, "end_token": end, "ppl_book_in_stream": ppl(nll[start:end]),
                      **picked.get(k, {"role": "", "compared_tokens": 0, "ppl_in_stream": None, "ppl_fresh": None,
                                       "ppl_ratio": None})})
    rt = torch.tensor(ratios, dtype=torch.float64)
    worst = stream.doc_names[books[1 + int(rt.argmax())]]
    tr = ols_trend(xs, ratios)
    ctx.metric("ppl_ratio.control_first_book", picked[books[0]]["ppl_ratio"], "x", "none",
               note="the first book's ratio: the same computation twice, exactly 1 unless something is wrong")
    ctx.metric("ppl_ratio.median", float(rt.median()), "x", "none",
               note=f"in-stream / fresh PPL, {len(ratios)} books after the first, first {T:,} tokens each")
    ctx.metric("ppl_ratio.max", float(rt.max()), "x", "lower", note=f"{worst}")
    ctx.metric("ppl_ratio.slope_per_1m", tr.slope, "x per 1M tokens", "none", stderr=tr.stderr,
               note=f"OLS of the ratio on the book's stream position (mid of its compared tokens), {tr.n} books")
    ctx.metric("ppl_ratio.slope_z", tr.z, "SE", "none", note="slope / its standard error")
    ctx.metric("ppl_ratio.drift_upper_2se", (tr.slope + 2 * tr.stderr) * n / 1e6, "x", "lower",
               note=f"fitted rise of the ratio over the {n / 1e6:.2f}M-token stream, slope + 2 SE")
    ctx.metric("fresh_seconds", fresh_timing.total_s, "s", "lower",
               note=f"{len(books)} x {T:,} tokens from an empty cache ({len(books) * T / n:.1%} of the stream)")
    how = (f"every book with at least {T:,} tokens in the stream" if count is None else
           f"{len(books)}: the first (control), the last with at least {T:,} tokens in the stream, and one at "
           f"random (seed {int(ctx.cfg.seed)}) from each of {count - 2} equal strata of the books between")
    ctx.table("fig5_books", f"Fig. 5 against the same text — {model_name}, {pol.label()}, first {T:,} tokens of "
              f"{len(books)} books inside the {n:,}-token stream vs from an empty cache", table,
              columns=["book", "start_token", "end_token", "ppl_book_in_stream", "role", "compared_tokens",
                       "ppl_in_stream", "ppl_fresh", "ppl_ratio"], digits=4,
              notes=[f"books compared: {how}",
                     f"ratio over the {len(ratios)} books after the first: median {float(rt.median()):.4f}, "
                     f"max {float(rt.max()):.4f} ({worst}); slope {tr.slope:+.4f} ± {tr.stderr:.4f} per 1M "
                     f"tokens (z = {tr.z:+.2f})",
                     "the first tokens of a fresh book see only that book; inside the stream they also see "
                     "the end of the book before it (at most one cache's worth of tokens)"])

