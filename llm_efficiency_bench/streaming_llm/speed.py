"""Fig. 10: per-token decoding latency and memory, StreamingLLM vs sliding window with recomputation.

`streaming`: a real generation loop through `SinkCache` (S + R = cache), each new token is one forward of
one token. `recompute`: each new token re-encodes the last L tokens from scratch (positions 0..L-1) and
predicts from that, as the paper's baseline. Both generate greedily from the same prompt; repetitions are
interleaved (one streaming step, one recompute step, ...) so machine noise hits both alike.

Timing: CUDA events on CUDA, perf_counter on CPU (`llm_efficiency_bench.core.timing.DeviceClock`). Memory: on CUDA the
peak of `torch.cuda.max_memory_allocated` during each method's steps, reset between the methods (weights +
KV cache + activations: Fig. 10's memory column); on CPU the process RSS, which mixes both methods and the
allocator's free lists, so it is only a rough label. Random-weight models (`source: random`, the paper's
architectures for GPU runners) are timed on seeded random token ids; their records say
"random weights: speed only".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.random_models import SPEED_ONLY_NOTE, is_random, speed_note
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.timing import DeviceClock, summarize
from llm_efficiency_bench.core.validate import ListOf, nonneg_int, pos_int
from llm_efficiency_bench.streaming_llm import figures
from llm_efficiency_bench.streaming_llm.ppl import rss_mb
from llm_efficiency_bench.streaming_llm.rope import rope_of
from llm_efficiency_bench.streaming_llm.settings import CACHE, SINKS_FIT_CACHE_SIZES
from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache, cache_kwargs


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return rss_mb()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


MEMORY_NOTE = {"cuda": "torch.cuda.max_memory_allocated during this method's steps (reset between methods): "
                        "weights + KV cache + activations",
               "cpu": "process RSS on CPU (both methods share one process: a rough label, not Fig. 10's column)"}


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
    clock = DeviceClock(device)
    for step in range(warmup + tokens):
        _reset_peak(device)
        a = clock.mark()
        out = model(nxt_s, position_ids=sink.position_ids(1, device), use_cache=True, **cache_kwargs(model, sink))
        nxt_s = out.logits[:, -1:].argmax(-1)
        dt_s = clock.ms(a, clock.mark())  # waits for the step's kernels on CUDA
        mem_s = max(mem_s, _peak_mb(device))
        _reset_peak(device)
        a = clock.mark()
        window = torch.cat([window[:, 1:], nxt_r], dim=1)  # slide: drop the oldest, append the new token
        nxt_r = model(window).logits[:, -1:].argmax(-1)  # KV rebuilt from scratch, positions 0..L-1
        dt_r = clock.ms(a, clock.mark())
        mem_r = max(mem_r, _peak_mb(device))
        if step >= warmup:
            lat_s.append(dt_s)
            lat_r.append(dt_r)
    return {"streaming": lat_s, "recompute": lat_r, "mem_streaming": mem_s, "mem_recompute": mem_r,
            "kv_mb": sink.nbytes() / 2**20}


def _prompt(ctx: RunContext, lm, n: int) -> torch.Tensor:
    """The tokens decoding starts from: the first book, or seeded random ids for a random-weight model
    (latency does not depend on the token values, and a GPU runner may have no data directory)."""
    cfg = ctx.cfg
    if is_random(cfg.model):
        vocab = int(getattr(getattr(lm.model.config, "text_config", lm.model.config), "vocab_size"))
        g = torch.Generator().manual_seed(int(cfg.seed))
        return torch.randint(3, vocab, (n,), generator=g)
    from llm_efficiency_bench.core.data import load_documents

    doc = load_documents(cfg.data, cfg.data_dir, limit=1)[0]
    return torch.tensor(lm.tokenizer(doc.text).input_ids)


@dataclass
class SpeedSettings:
    """Fig. 10 (`experiment.*`); defaults as the paper profile."""

    cache_sizes: list[int] = setting([256, 512, 1024, 2048, 4096], ListOf(CACHE, unique=True),
                                     "L of each timed point (the paper: 256 ... 4096)")
    n_sink: int = setting(4, nonneg_int(), "S attention sinks of the streaming cache")
    tokens: int = setting(20, pos_int(hi=100_000), "timed tokens per method and cache size")
    warmup: int = setting(2, nonneg_int(hi=1000), "untimed tokens per method first")


@experiment(settings=SpeedSettings, rules=[SINKS_FIT_CACHE_SIZES], figures=figures.draw_speed)
def speed(ctx: RunContext) -> None:
    """Fig. 10 table and plot: cache | recompute ms | streaming ms | speedup | memory."""
    from llm_efficiency_bench.core.models import load_model
    from llm_efficiency_bench.streaming_llm.experiments import _check_cache

    e, cfg = ctx.cfg.experiment, ctx.cfg
    lm = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device, data_dir=cfg.data_dir, speed_only=True)
    ctx.log(f"model {lm.name} ({lm.family}, context {lm.context}, {lm.dtype}) on {lm.device}")
    caches = [int(c) for c in e.cache_sizes]
    for c in caches:
        _check_cache(ctx, lm, int(e.n_sink), c, "experiment.cache_sizes")
    prompt = _prompt(ctx, lm, max(caches))
    if prompt.numel() < max(caches):
        from llm_efficiency_bench.core.errors import ConfigError

        raise ConfigError("experiment.cache_sizes", f"the first book has {prompt.numel()} tokens, fewer than "
                          f"the largest cache {max(caches)}")
    rows = []
    timer = DeviceClock(lm.device).kind
    mem_note = MEMORY_NOTE["cuda" if str(lm.device).startswith("cuda") else "cpu"]
    for c in caches:
        ctx.log(f"cache {c}: {e.tokens} tokens after {e.warmup} warm-up, interleaved")
        m = measure(lm.model, prompt, c, int(e.n_sink), int(e.tokens), int(e.warmup), lm.device)
        ts, tr = summarize(m["streaming"]), summarize(m["recompute"])
        speedup = tr.median_ms / ts.median_ms
        ctx.metric(f"latency_ms.streaming.{c}", ts.median_ms, "ms", "lower",
                   note=speed_note(cfg.model, f"median of {ts.n} ({timer}); IQR {ts.iqr_ms:.2f}"))
        ctx.metric(f"latency_ms.recompute.{c}", tr.median_ms, "ms", "lower",
                   note=speed_note(cfg.model, f"median of {tr.n} ({timer}); IQR {tr.iqr_ms:.2f}"))
        ctx.metric(f"speedup.{c}", speedup, "x", "higher", kind="timing",
                   note=speed_note(cfg.model, "recompute / streaming per-token latency"))
        ctx.metric(f"peak_mem_mb.streaming.{c}", m["mem_streaming"], "MiB", "lower", note=speed_note(cfg.model, mem_note))
        ctx.metric(f"peak_mem_mb.recompute.{c}", m["mem_recompute"], "MiB", "lower", note=speed_note(cfg.model, mem_note))
        rows.append({"cache": c, "recompute_ms": tr.median_ms, "recompute_iqr": tr.iqr_ms,
                     "streaming_ms": ts.median_ms, "streaming_iqr": ts.iqr_ms, "speedup": speedup,
                     "mem_recompute_mb": m["mem_recompute"], "mem_streaming_mb": m["mem_streaming"],
                     "kv_cache_mb": m["kv_mb"]})
    dev = ctx.record.env.get("device_name", lm.device)
    ctx.table("fig10", f"Fig. 10 — {lm.name}, {str(lm.dtype).replace('torch.', '')}, {dev}, batch 1, greedy",
              rows, notes=[f"{e.tokens} timed tokens per point after {e.warmup} warm-up, methods interleaved; "
                           f"medians and interquartile ranges ({timer}); memory: {mem_note}",
                           *([f"{cfg.model.name}: {SPEED_ONLY_NOTE} (seeded random token ids as the prompt)"]
                             if is_random(cfg.model) else []),
                           "paper: Llama-2-13B on one A6000, 2355 ms vs 106 ms at cache 4096 (22.2x)"])
