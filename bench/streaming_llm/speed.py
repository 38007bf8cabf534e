"""Fig. 10: per-token decoding latency and memory, StreamingLLM vs sliding window with recomputation.

`streaming`: a real generation loop through `SinkCache` (S + R = cache), each new token is one forward of
one token. `recompute`: each new token re-encodes the last L tokens from scratch (positions 0..L-1) and
predicts from that, as the paper's baseline. Both generate greedily from the same prompt; repetitions are
interleaved (one streaming step, one recompute step, ...) so machine noise hits both alike.
"""

from __future__ import annotations

import time

import torch

from bench.core.plots import COLORS, figure
from bench.core.runner import RunContext, register
from bench.core.timing import summarize
from bench.streaming_llm.ppl import rss_mb
from bench.streaming_llm.rope import rope_of
from bench.streaming_llm.sink_cache import SinkCache, cache_kwargs


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return rss_mb()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def measure(model, prompt: torch.Tensor, cache_len: int, n_sink: int, tokens: int, warmup: int,
            device: str) -> dict[str, list[float] | float]:
    """Per-token latencies (ms) of both methods at one cache size, interleaved, plus memory."""
    ids = prompt[:cache_len].to(device)[None]  # (1, L)
    sink = SinkCache(n_sink, cache_len - n_sink, rope_of(model))
    out = model(ids, position_ids=sink.position_ids(cache_len, device), use_cache=True, **cache_kwargs(model, sink))
    nxt_s = out.logits[:, -1:].argmax(-1)
    window = ids.clone()  # recompute's context: the last L tokens
    nxt_r = nxt_s.clone()
    lat_s, lat_r = [], []
    mem_s = mem_r = 0.0
    for step in range(warmup + tokens):
        _reset_peak(device)
        t0 = time.perf_counter()
        out = model(nxt_s, position_ids=sink.position_ids(1, device), use_cache=True, **cache_kwargs(model, sink))
        nxt_s = out.logits[:, -1:].argmax(-1)
        _sync(device)
        dt_s = time.perf_counter() - t0
        mem_s = max(mem_s, _peak_mb(device))
        _reset_peak(device)
        t0 = time.perf_counter()
        window = torch.cat([window[:, 1:], nxt_r], dim=1)  # slide: drop the oldest, append the new token
        nxt_r = model(window).logits[:, -1:].argmax(-1)  # KV rebuilt from scratch, positions 0..L-1
        _sync(device)
        dt_r = time.perf_counter() - t0
        mem_r = max(mem_r, _peak_mb(device))
        if step >= warmup:
            lat_s.append(dt_s * 1e3)
            lat_r.append(dt_r * 1e3)
    return {"streaming": lat_s, "recompute": lat_r, "mem_streaming": mem_s, "mem_recompute": mem_r,
            "kv_mb": sink.nbytes() / 2**20}


@register("streaming_llm", "speed")
def speed(ctx: RunContext) -> None:
    """Fig. 10 table and plot: cache | recompute ms | streaming ms | speedup | memory."""
    from bench.core.data import load_documents
    from bench.streaming_llm.experiments import _check_cache, _load

    e, cfg = ctx.cfg.experiment, ctx.cfg
    lm = _load(ctx)
    caches = [int(c) for c in e.cache_sizes]
    for c in caches:
        _check_cache(ctx, lm, int(e.n_sink), c, "experiment.cache_sizes")
    doc = load_documents(cfg.data, cfg.data_dir, limit=1)[0]
    prompt = torch.tensor(lm.tokenizer(doc.text).input_ids)
    if prompt.numel() < max(caches):
        from bench.core.errors import ConfigError

        raise ConfigError("experiment.cache_sizes", f"the first book has {prompt.numel()} tokens, fewer than "
                          f"the largest cache {max(caches)}")
    rows = []
    for c in caches:
        ctx.log(f"cache {c}: {e.tokens} tokens after {e.warmup} warm-up, interleaved")
        m = measure(lm.model, prompt, c, int(e.n_sink), int(e.tokens), int(e.warmup), lm.device)
        ts, tr = summarize(m["streaming"]), summarize(m["recompute"])
        speedup = tr.median_ms / ts.median_ms
        ctx.metric(f"latency_ms.streaming.{c}", ts.median_ms, "ms", "lower", note=f"median of {ts.n}; IQR {ts.iqr_ms:.2f}")
        ctx.metric(f"latency_ms.recompute.{c}", tr.median_ms, "ms", "lower", note=f"median of {tr.n}; IQR {tr.iqr_ms:.2f}")
        ctx.metric(f"speedup.{c}", speedup, "x", "higher", note="recompute / streaming per-token latency")
        ctx.metric(f"peak_mem_mb.streaming.{c}", m["mem_streaming"], "MiB", "lower",
                   note="process RSS on CPU, max allocated on CUDA")
        ctx.metric(f"peak_mem_mb.recompute.{c}", m["mem_recompute"], "MiB", "lower")
        rows.append({"cache": c, "recompute_ms": tr.median_ms, "recompute_iqr": tr.iqr_ms,
                     "streaming_ms": ts.median_ms, "streaming_iqr": ts.iqr_ms, "speedup": speedup,
                     "mem_recompute_mb": m["mem_recompute"], "mem_streaming_mb": m["mem_streaming"],
                     "kv_cache_mb": m["kv_mb"]})
    dev = ctx.record.env.get("device_name", lm.device)
    ctx.table("fig10", f"Fig. 10 — {lm.name}, {str(lm.dtype).replace('torch.', '')}, {dev}, batch 1, greedy",
              rows, notes=[f"{e.tokens} timed tokens per point after {e.warmup} warm-up, methods interleaved; "
                           "medians and interquartile ranges",
                           "paper: Llama-2-13B on one A6000, 2355 ms vs 106 ms at cache 4096 (22.2x)"])
    fig, axes = figure(6.0, 3.0, ncols=2)
    ax, ax2 = axes[0][0], axes[0][1]
    x = list(range(len(rows)))
    w = 0.38
    ax.bar([i - w / 2 for i in x], [r["recompute_ms"] for r in rows], w, color=COLORS["recompute"],
           label="sliding window w/ recompute")
    ax.bar([i + w / 2 for i in x], [r["streaming_ms"] for r in rows], w, color=COLORS["streaming"], label="StreamingLLM")
    for i, r in enumerate(rows):
        ax.text(i, r["recompute_ms"], f"{r['speedup']:.1f}x", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [str(r["cache"]) for r in rows])
    ax.set_xlabel("cache size")
    ax.set_ylabel("per-token latency (ms)")
    ax.legend()
    ax2.plot([str(r["cache"]) for r in rows], [r["mem_recompute_mb"] for r in rows], marker="o",
             color=COLORS["recompute"], label="recompute")
    ax2.plot([str(r["cache"]) for r in rows], [r["mem_streaming_mb"] for r in rows], marker="o",
             color=COLORS["streaming"], label="StreamingLLM")
    ax2.set_xlabel("cache size")
    ax2.set_ylabel("memory (MiB)")
    ax2.legend()
    fig.suptitle(f"{lm.name} decoding, {dev}")
    ctx.figure("fig10_latency_memory", fig)
