"""StreamingLLM experiments: Tables 1, 2, 6 and the 4M-token stream (Fig. 5).

Each experiment reads its settings from `ctx.cfg.experiment` (declared below with `@experiment`; the
profiles' sizes are in its YAML), writes metrics named `ppl.<method>.<S>+<R>`, `ppl.recompute.<L>`,
`ppl.dense`, tables and CSVs; its figure is drawn from those CSVs (`figures.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from llm_efficiency_bench.core.checkpoint import Checkpoint, config_key
from llm_efficiency_bench.core.data import Document, iter_token_docs, load_documents
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.models import LoadedModel, load_model
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import BIG, Flag, ListOf, Num, nonneg_int, pos_float, pos_int
from llm_efficiency_bench.streaming_llm import figures
from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.engine import CachePolicy
from llm_efficiency_bench.streaming_llm.ppl import (EvalTiming, Stream, build_stream, evaluate, ppl, ppl_stderr,
                                     recompute_nll, recompute_positions, rss_mb)
from llm_efficiency_bench.streaming_llm.same_text import in_stream_vs_fresh, pick_books
from llm_efficiency_bench.streaming_llm.settings import (CACHE, SINK_COUNTS_FIT_CACHE, SINKS_FIT_CACHE,
                                                         SINKS_FIT_CACHE_SIZES)
from llm_efficiency_bench.streaming_llm.stats import paired_ppl_ratio


def _load(ctx: RunContext, dtype: str | None = None) -> LoadedModel:
    cfg = ctx.cfg
    lm = load_model(cfg.model, dtype=dtype or cfg.dtype, device=cfg.device, data_dir=cfg.data_dir)
    ctx.log(f"model {lm.name} ({lm.family}, context {lm.context}, {lm.dtype}) on {lm.device}")
    return lm


def _stream(ctx: RunContext, lm: LoadedModel, max_tokens: int | None, n_docs: int | None,
            max_doc_tokens: int | None = None, setting: str = "experiment.max_tokens") -> Stream:
    docs = load_documents(ctx.cfg.data, ctx.cfg.data_dir, limit=n_docs)
    if max_doc_tokens is not None:
        docs = [_head(d, max_doc_tokens, lm.tokenizer) for d in docs]
    token_docs = []
    total = 0
    for name, ids in iter_token_docs(docs, lm.tokenizer):  # tokenized lazily: stop once we have enough
        token_docs.append((name, ids))
        n = max(0, len(ids) - 1)
        total += n if max_doc_tokens is None else min(n, max_doc_tokens)
        if max_tokens is not None and total >= max_tokens:
            break
    stream = build_stream(token_docs, max_tokens, max_doc_tokens)
    if max_tokens is not None and stream.inputs.numel() < max_tokens:
        raise ConfigError(setting, f"the data has only {stream.inputs.numel():,} tokens, fewer than the "
                          f"{max_tokens:,} asked for; lower the token count or add books to the data folder")
    ctx.log(f"stream: {stream.inputs.numel():,} tokens from {len(stream.doc_names)} book(s), first {stream.doc_names[0]}")
    return stream


def _head(doc: Document, tokens: int, tokenizer) -> Document:
    """The start of a book that still tokenizes to its first `tokens` + 1 tokens unchanged: only the last
    word before a cut can tokenize differently, so the cut is kept well past the tokens used (a margin of
    16 tokens); tokenizing a whole book just to keep its first tokens dominated the smoke runs."""
    chars = 16 * (tokens + 32)
    while chars < len(doc.text):
        if len(tokenizer(doc.text[:chars]).input_ids) >= tokens + 1 + 16:
            return Document(doc.name, doc.text[:chars])
        chars *= 2
    return doc


def _check_cache(ctx: RunContext, lm: LoadedModel, n_sink: int, cache: int, setting: str) -> CachePolicy:
    """The S + (L - S) policy, once the model says the cache fits its trained context (S < L is a rule of
    every experiment's settings, checked before the run)."""
    if lm.context and cache > lm.context:
        raise ConfigError(setting, f"cache {cache} is larger than the model's trained context {lm.context} "
                          f"({lm.name}); choose a cache <= {lm.context}")
    return CachePolicy(n_sink, cache - n_sink)


def _count_earlier_legs(ctx: RunContext, timing: EvalTiming) -> None:
    """A resumed evaluation's earlier legs belong to this run's duration (the runner adds
    `ctx.resumed_seconds` to `duration_s`)."""
    ctx.resumed_seconds = getattr(ctx, "resumed_seconds", 0.0) + timing.earlier_s


def _run_policy(ctx: RunContext, lm: LoadedModel, policy: CachePolicy, stream: Stream, tag: str,
                prefix: list[int] | None = None, timing: EvalTiming | None = None, **kw: Any) -> torch.Tensor:
    """Evaluate one policy with checkpoint/resume keyed by everything that determines its result."""
    cfg = ctx.cfg
    key = config_key({"model": cfg.model, "dtype": str(lm.dtype), "policy": policy.label(), "prefix": prefix,
                      "n": stream.inputs.numel(), "first": stream.doc_names[0], "chunk": cfg.eval.chunk,
                      "data": cfg.data})
    ck = Checkpoint(ctx.checkpoint_dir, tag, key)
    timing = timing if timing is not None else EvalTiming()
    nll = evaluate(adapter_for(lm.model), policy, stream, int(cfg.eval.chunk), prefix=prefix, checkpoint=ck,
                   checkpoint_every_s=float(cfg.eval.checkpoint_every_s), desc=tag, timing=timing, **kw)
    _count_earlier_legs(ctx, timing)
    bad = int((~torch.isfinite(nll)).sum())
    ctx.log(f"{tag}: PPL {ppl(nll):.3f} over {nll.numel():,} tokens in {timing.total_s:.0f} s "
            f"(all legs); non-finite NLL: {bad}")
    return nll


def _dtype_check(ctx: RunContext, lm: LoadedModel, pol: CachePolicy) -> None:
    """Run the first `experiment.dtype_check_tokens` in fp32 and in the run's dtype; refuse the run's
    dtype (ConfigError) unless its PPL is within `experiment.dtype_tolerance` of fp32."""
    e, cfg = ctx.cfg.experiment, ctx.cfg
    n_check = int(e.get("dtype_check_tokens") or 0)
    if not n_check or lm.dtype == torch.float32:
        return
    short = _stream(ctx, lm, n_check, n_docs=None, setting="experiment.dtype_check_tokens")
    lm32 = _load(ctx, "float32")
    p32 = ppl(_run_policy(ctx, lm32, pol, short, f"dtypecheck_fp32_{n_check}"))
    del lm32
    plow = ppl(_run_policy(ctx, lm, pol, short, f"dtypecheck_{cfg.dtype}_{n_check}"))
    rel = abs(plow - p32) / p32
    ctx.metric("dtype_check.ppl_fp32", p32, "ppl", "lower", note=f"first {n_check:,} tokens")
    ctx.metric(f"dtype_check.ppl_{cfg.dtype}", plow, "ppl", "lower", note=f"first {n_check:,} tokens")
    ctx.metric("dtype_check.rel_diff", rel, "fraction", "lower")
    if rel > float(e.dtype_tolerance):
        raise ConfigError("dtype", f"{cfg.dtype} PPL {plow:.4f} differs from fp32 {p32:.4f} by {rel:.2%} "
                          f"> {float(e.dtype_tolerance):.2%}; run with dtype=float32")
    ctx.log(f"dtype check: fp32 {p32:.4f} vs {cfg.dtype} {plow:.4f} ({rel:.3%})")


def _recompute(ctx: RunContext, lm: LoadedModel, stream: Stream, L: int, pos: torch.Tensor) -> torch.Tensor:
    """Sliding window with recomputation at `pos`, checkpointed like a stream evaluation."""
    cfg = ctx.cfg
    key = config_key({"model": cfg.model, "dtype": str(lm.dtype), "window": L, "n": stream.inputs.numel(),
                      "first": stream.doc_names[0], "data": cfg.data, "positions": pos.tolist()})
    timing = EvalTiming()
    nll = recompute_nll(lm.model, stream, L, pos, batch=int(cfg.eval.recompute_batch), desc=f"recompute_{L}",
                        checkpoint=Checkpoint(ctx.checkpoint_dir, f"recompute_{L}", key),
                        checkpoint_every_s=float(cfg.eval.checkpoint_every_s), timing=timing)
    _count_earlier_legs(ctx, timing)
    ctx.log(f"recompute {L}: {pos.numel():,} positions in {timing.total_s:.0f} s (all legs), "
            f"{pos.numel() / max(timing.total_s, 1e-9):.2f} positions/s")
    return nll


def _dense(ctx: RunContext, lm: LoadedModel, stream: Stream, allow_beyond: bool) -> torch.Tensor:
    n = stream.inputs.numel()
    if lm.context and n > lm.context and not allow_beyond:
        raise ConfigError("experiment.allow_beyond_context",
                          f"dense attention over {n:,} tokens exceeds {lm.name}'s trained context {lm.context}; "
                          "set experiment.allow_beyond_context=true to measure that failure on purpose")
    return _run_policy(ctx, lm, CachePolicy(0, None), stream, "dense")


def _newline_ids(tokenizer, count: int) -> list[int]:
    ids = tokenizer("\n", add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ConfigError("experiment.newline_sinks", f"'\\n' is {len(ids)} tokens for this tokenizer, not one")
    return ids * count


# Range shared by the dtype checks: bf16 is used only if its PPL is within this fraction of fp32.
DTYPE_TOLERANCE = pos_float(hi=1)


@dataclass
class Table1Settings:
    """Table 1 (`experiment.*`): the first book under five cache policies; defaults as the paper profile."""

    max_tokens: int | None = setting(65536, pos_int(null=True), "tokens of the first book scored (null: all of it)")
    cache: int = setting(1024, CACHE, "L = S + R tokens of every bounded cache (the paper: 1024)")
    n_sink: int = setting(4, nonneg_int(), "S attention sinks of the streaming cache")
    newline_sinks: int = setting(4, nonneg_int(), "newline tokens fed first and kept as the sinks instead")
    # recompute: one L-token forward per scored position (batch: eval.recompute_batch); a sample needs two
    # positions for its standard error
    recompute_samples: int | None = setting(None, Num(int, 2, BIG, null=True),
                                            "recomputed positions: null = every position with a full window "
                                            "(exact), else a seeded uniform sample of that many")
    allow_beyond_context: bool = setting(True, Flag(), "dense may run past the trained context (Table 1 shows "
                                         "it failing there, on purpose)")
    dtype_check_tokens: int = setting(0, nonneg_int(), "tokens scored in fp32 and the run's dtype first (0: off)")
    dtype_tolerance: float = setting(0.01, DTYPE_TOLERANCE, "largest relative PPL difference the run's dtype may "
                                     "show against fp32")


@experiment(settings=Table1Settings, rules=[SINKS_FIT_CACHE], figures=figures.draw_table1)
def ppl_table1(ctx: RunContext) -> None:
    """Table 1: first book; dense, window 0+L, sliding window with recomputation L, streaming 4+(L-4),
    and 4 newline tokens as sinks + (L-4)."""
    e = ctx.cfg.experiment
    lm = _load(ctx)
    stream = _stream(ctx, lm, e.max_tokens, n_docs=1)
    L, S = int(e.cache), int(e.n_sink)
    n = stream.inputs.numel()
    if n <= L:
        raise ConfigError("experiment.cache", f"cache {L} is not smaller than the stream ({n} tokens): "
                          "nothing would be evicted; use a longer book or a smaller cache")
    samples = e.recompute_samples
    rows, curves = [], {}
    stream_pol = _check_cache(ctx, lm, S, L, "experiment.cache")
    _dtype_check(ctx, lm, stream_pol)
    nll_s = _run_policy(ctx, lm, stream_pol, stream, f"streaming_{S}+{L - S}")
    nll_w = _run_policy(ctx, lm, _check_cache(ctx, lm, 0, L, "experiment.cache"), stream, f"window_0+{L}")
    ns = int(e.newline_sinks)
    nll_nl = _run_policy(ctx, lm, stream_pol, stream, f"newline{ns}_{ns}+{L - ns}",
                         prefix=_newline_ids(lm.tokenizer, ns))
    nll_d = _dense(ctx, lm, stream, bool(e.allow_beyond_context))
    # Recompute: exact but O(L^2) per token (one L-token forward per position). `recompute_samples: null`
    # scores every position with a full window (paper profile, GPU); otherwise a seeded uniform sample
    # without replacement, and streaming is scored on the same positions for a paired ratio.
    pos = recompute_positions(n, L, None if samples is None else int(samples), int(ctx.cfg.seed))
    k, population = pos.numel(), n - L + 1
    full = k == population
    nll_r = _recompute(ctx, lm, stream, L, pos)
    pr = paired_ppl_ratio(nll_s[pos], nll_r, population=population, seed=int(ctx.cfg.seed))
    note_r = (f"all {k:,} positions with a full window (exact)" if full else
              f"estimated on {k:,} of {population:,} positions (seeded uniform sample, seed {int(ctx.cfg.seed)})")
    for name, nll, metric in [
        (f"dense", nll_d, "ppl.dense"),
        (f"window 0+{L}", nll_w, f"ppl.window.0+{L}"),
        (f"recompute {L}", nll_r, f"ppl.recompute.{L}"),
        (f"streaming {S}+{L - S}", nll_s, f"ppl.streaming.{S}+{L - S}"),
        (f"{ns} newlines + {L - ns}", nll_nl, f"ppl.newline{ns}.{ns}+{L - ns}"),
    ]:
        is_r = metric.startswith("ppl.recompute")
        # sampling without replacement: finite-population correction (0 when every position is scored)
        se = ppl_stderr(nll) * math.sqrt(1 - k / population) if is_r and not full else None
        val = ppl(nll)
        ctx.metric(metric, val, "ppl", "lower", note=note_r if is_r else f"{nll.numel():,} tokens", stderr=se)
        rows.append({"method": name, "ppl": val, "stderr": se, "tokens": nll.numel() if not is_r else k,
                     "note": note_r if is_r else "all positions"})
        curves[name] = nll
    ctx.metric(f"ppl.streaming_at_recompute_positions.{S}+{L - S}", ppl(nll_s[pos]), "ppl", "lower",
               note=f"streaming on the {k} positions used for recompute")
    se_note = "exact (every position)" if full else "delta method, finite-population corrected"
    ctx.metric("ratio.streaming_over_recompute", pr.value, "x", "none", stderr=None if full else pr.stderr_delta,
               note=f"paired on the {k:,} recompute positions, standard error: {se_note}; paper 5.40/5.43 = 0.994")
    ctx.metric("ratio.streaming_over_recompute.stderr_bootstrap", 0.0 if full else pr.stderr_bootstrap, "x",
               "lower", note="paired bootstrap over positions (2,000 resamples), a cross-check of the delta method")
    ctx.metric("ratio.streaming_over_recompute.upper_2se", pr.value + 2 * (0.0 if full else pr.stderr_delta), "x",
               "none", note="ratio + 2 standard errors: the 5% band holds with the sampling error if <= 1.05")
    ctx.metric("recompute.positions", k, "positions", "none", note=f"of {population:,} with a full window")
    ctx.metric("ratio.window_over_streaming", ppl(nll_w) / ppl(nll_s), "x", "none", note="paper 5158/5.40")
    ctx.table("table1", f"Table 1 — {lm.name}, first book ({stream.doc_names[0]}, {n:,} tokens), cache {L}, "
              f"{str(lm.dtype).replace('torch.', '')}", rows,
              notes=[f"recompute: {note_r}; one {L}-token forward per position, batch "
                     f"{int(ctx.cfg.eval.recompute_batch)}; standard errors by the delta method with the "
                     "finite-population correction",
                     f"streaming on the same positions: {ppl(nll_s[pos]):.3f}; ratio streaming/recompute "
                     f"{pr.value:.4f} ± {0.0 if full else pr.stderr_delta:.4f} (paired bootstrap: "
                     f"± {0.0 if full else pr.stderr_bootstrap:.4f}), sample size {k:,} of {population:,}",
                     f"model context {lm.context}: dense beyond it is expected to fail (paper: 5641)"])
    _per_token_csv(ctx, "per_token", {k2: v for k2, v in curves.items() if v.numel() == n}, stream)


def _per_token_csv(ctx: RunContext, name: str, curves: dict[str, torch.Tensor], stream: Stream,
                   every: int = 64) -> None:
    """Long-form CSV: NLL averaged over blocks of `every` tokens per method (full per-token is too large)."""
    rows = []
    for method, nll in curves.items():
        blocks = nll[: nll.numel() // every * every].view(-1, every).double().mean(1)
        for b, v in enumerate(blocks.tolist()):
            rows.append({"method": method, "token": (b + 1) * every, "mean_nll": v})
    ctx.csv(name, rows, ["method", "token", "mean_nll"])


def _concat_sweep(ctx: RunContext, policies: list[tuple[str, int, int]], title: str, table: str,
                  col: str) -> None:
    e = ctx.cfg.experiment
    lm = _load(ctx)
    checked = [(label, S, L, _check_cache(ctx, lm, S, L, f"experiment.{col}")) for label, S, L in policies]
    stream = _stream(ctx, lm, e.max_tokens, n_docs=None)
    rows, curves = [], {}
    for label, S, L, pol in checked:
        if stream.inputs.numel() <= L:
            raise ConfigError(f"experiment.{col}", f"cache {L} is not smaller than the stream "
                              f"({stream.inputs.numel()} tokens)")
        nll = _run_policy(ctx, lm, pol, stream, f"{label}_{S}+{L - S}")
        method = "window" if S == 0 else "streaming"
        v = ppl(nll)
        ctx.metric(f"ppl.{method}.{S}+{L - S}", v, "ppl", "lower", note=f"{nll.numel():,} concatenated tokens")
        rows.append({"cache": f"{S}+{L - S}", "ppl": v, "tokens": nll.numel(),
                     "non_finite": int((~torch.isfinite(nll)).sum())})
        curves[f"{S}+{L - S}"] = nll
    ctx.table(table, f"{title} — {lm.name}, {stream.inputs.numel():,} tokens of {len(stream.doc_names)} "
              f"concatenated books, {str(lm.dtype).replace('torch.', '')}", rows)
    _per_token_csv(ctx, "per_token", curves, stream, every=256)


@dataclass
class SinksSettings:
    """Table 2 (`experiment.*`): initial tokens kept at a fixed cache; defaults as the paper (400K tokens)."""

    max_tokens: int = setting(400_000, pos_int(), "tokens of the concatenated books scored")
    cache: int = setting(1024, CACHE, "L = S + R tokens of every cache")
    sink_counts: list[int] = setting([0, 1, 2, 4, 8], ListOf(nonneg_int(), unique=True),
                                     "S initial tokens kept, one run each (0: window attention)")


@experiment(settings=SinksSettings, rules=[SINK_COUNTS_FIT_CACHE], figures=figures.draw_table2)
def ppl_sinks(ctx: RunContext) -> None:
    """Table 2: 0/1/2/4/8 initial tokens at a fixed total cache."""
    e = ctx.cfg.experiment
    L = int(e.cache)
    _concat_sweep(ctx, [("sinks", int(s), L) for s in e.sink_counts], "Table 2 — number of initial tokens",
                  "table2", "sink_counts")


@dataclass
class CacheSizesSettings:
    """Table 6 (`experiment.*`): cache sizes at S = 4; defaults as the paper (400K tokens)."""

    max_tokens: int = setting(400_000, pos_int(), "tokens of the concatenated books scored")
    n_sink: int = setting(4, nonneg_int(), "S attention sinks")
    cache_sizes: list[int] = setting([256, 512, 1024, 2048, 4096], ListOf(CACHE, unique=True),
                                     "L = S + R of each run")


@experiment(settings=CacheSizesSettings, rules=[SINKS_FIT_CACHE_SIZES], figures=figures.draw_table6)
def ppl_cache(ctx: RunContext) -> None:
    """Table 6: cache sizes 4+252 ... 4+4092."""
    e = ctx.cfg.experiment
    _concat_sweep(ctx, [("cache", int(e.n_sink), int(c)) for c in e.cache_sizes], "Table 6 — cache size",
                  "table6", "cache_sizes")


@dataclass
class LongStreamSettings:
    """Fig. 5 (`experiment.*`): one 4M-token stream; defaults as the paper profile.

    Fig. 5 against the same text: each compared book's first `fresh_tokens` tokens inside the stream vs from
    an empty cache (same S+R policy). `fresh_books`: null = every book with that many tokens in the stream;
    else the first (control) + the last + one seeded draw from each of fresh_books-2 strata.
    """

    max_tokens: int = setting(4_000_000, pos_int(), "tokens of the concatenated stream")
    max_book_tokens: int | None = setting(None, pos_int(null=True), "tokens kept of each book (null: whole "
                                          "books, the paper); a cap gives a short stream many books")
    cache: int = setting(1024, CACHE, "L = S + R")
    n_sink: int = setting(4, nonneg_int(), "S attention sinks")
    segment: int = setting(65536, pos_int(), "tokens per reported segment (PPL, memory)")
    dtype_check_tokens: int = setting(0, nonneg_int(), "tokens scored in fp32 and the run's dtype first (0: off)")
    dtype_tolerance: float = setting(0.01, DTYPE_TOLERANCE, "largest relative PPL difference the run's dtype may "
                                     "show against fp32")
    fresh_tokens: int = setting(32768, pos_int(), "first tokens of each compared book, in the stream vs fresh")
    fresh_books: int | None = setting(17, Num(int, 3, 100_000, null=True),
                                      "books compared: the first as the control and at least two more (null: all)")


@experiment(settings=LongStreamSettings, rules=[SINKS_FIT_CACHE], figures=figures.draw_long_stream)
def ppl_4m(ctx: RunContext) -> None:
    """Fig. 5: streaming PPL over a very long concatenated stream, per segment, with cache memory, and
    each sampled book's first T tokens inside the stream against the same tokens from an empty cache."""
    e, cfg = ctx.cfg.experiment, ctx.cfg
    lm = _load(ctx)
    L, S = int(e.cache), int(e.n_sink)
    pol = _check_cache(ctx, lm, S, L, "experiment.cache")
    _dtype_check(ctx, lm, pol)
    stream = _stream(ctx, lm, e.max_tokens, n_docs=None,
                     max_doc_tokens=None if e.get("max_book_tokens") is None else int(e.max_book_tokens))
    pick_books(ctx, stream)  # a fresh-book setting the data cannot satisfy fails now, not after the stream
    seg = int(e.segment)
    mem: list[tuple[int, float, float]] = []
    next_mark = [0]

    def sample_memory(pos: int, ev) -> None:
        if pos >= next_mark[0]:
            mem.append((pos, ev.state.nbytes() / 2**20, rss_mb()))
            next_mark[0] += seg

    timing = EvalTiming()
    nll = _run_policy(ctx, lm, pol, stream, f"streaming_{S}+{L - S}", on_chunk=sample_memory, timing=timing)
    n = nll.numel()
    rows = []
    for k, start in enumerate(range(0, n, seg)):
        part = nll[start:start + seg]
        rows.append({"segment": k, "start_token": start, "end_token": start + part.numel(), "ppl": ppl(part),
                     "non_finite": int((~torch.isfinite(part)).sum())})
    for r in rows:  # attach the memory sample closest after the segment end
        after = [m for m in mem if m[0] >= r["end_token"]] or mem[-1:]
        if after:
            r["kv_cache_mb"], r["rss_mb"] = round(after[0][1], 3), round(after[0][2], 1)
    seg_ppl = torch.tensor([r["ppl"] for r in rows])
    kv = torch.tensor([m[1] for m in mem]) if mem else torch.zeros(1)
    bad = int((~torch.isfinite(nll)).sum())
    ctx.metric(f"ppl.streaming.{S}+{L - S}", ppl(nll), "ppl", "lower", note=f"{n:,} concatenated tokens")
    ctx.metric("tokens", n, "tokens", "none")
    ctx.metric("non_finite_nll", bad, "tokens", "lower")
    ctx.metric("segment_ppl.max_over_median", float(seg_ppl.max() / seg_ppl.median()), "x", "lower",
               note=f"segments of {seg:,} tokens; descriptive (confounded by content)")
    ctx.metric("kv_cache_mb.max", float(kv.max()), "MiB", "lower")
    ctx.metric("kv_cache_mb.growth", float(kv.max() - kv[min(1, kv.numel() - 1)]), "MiB", "lower",
               note="max minus the value after the first segment: 0 means flat")
    ctx.metric("rss_mb.max", max((m[2] for m in mem), default=float("nan")), "MiB", "lower")
    ctx.metric("stream_seconds", timing.total_s, "s", "lower", note="the stream's evaluation, every leg counted")
    ctx.metric("throughput", n / max(timing.total_s, 1e-9), "tokens/s", "higher",
               note=f"{ctx.record.env.get('device', cfg.device)}; tokens / elapsed time of every leg (resumes included)")
    ctx.table("fig5_segments", f"Fig. 5 — {lm.name}, streaming {S}+{L - S}, {n:,} tokens, "
              f"{str(lm.dtype).replace('torch.', '')}", rows,
              notes=[f"{len(stream.doc_names)} books concatenated (cache never reset); "
                     f"non-finite NLL: {bad}; KV cache max {float(kv.max()):.2f} MiB"])
    in_stream_vs_fresh(ctx, lm.name, pol, stream, nll,
                       lambda part, tag, timing: _run_policy(ctx, lm, pol, part, tag, timing=timing))
