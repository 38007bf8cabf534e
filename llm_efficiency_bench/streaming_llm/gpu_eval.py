"""How fast the exact chunked evaluator streams, against token-by-token `SinkCache` (experiment `eval_speed`).

The paper's Fig. 5 streams 4M tokens through Llama-2 with a 4+2044 cache one token at a time (reference
`eval_long_ppl.py`); the chunked evaluator (`engine.ChunkedEvaluator`, exact to 1e-4 NLL) feeds a chunk of
C tokens per forward instead. This measures both on the same model and stream:

* chunked: the whole stream (default 64K tokens), NLL of every position, timed per chunk; the rate
  over the chunks after the window has filled (every later chunk of a 4M stream is one of those) projects
  the 4M-token run.
* token-by-token: `SinkCache` filled to capacity with one forward, then a short sample of single-token
  steps (logits and NLL each, as the reference loop does); every step of a long stream costs the same, so
  the sample's median projects the 4M run too.

On CUDA the evaluator takes the portable sink+band path (`sink_band_attention(fused=False)`, one SDPA
call); timings are CUDA events, memory `torch.cuda.max_memory_allocated` reset between the two methods.
Random-weight models (the paper's architecture, `source: random`) are fine: speed does not depend on the
weights, and their records say "random weights: speed only".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.random_models import SPEED_ONLY_NOTE, is_random, speed_note
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.timing import DeviceClock, is_cuda, summarize
from llm_efficiency_bench.core.validate import Rule, nonneg_int, pos_int
from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator
from llm_efficiency_bench.streaming_llm.rope import rope_of
from llm_efficiency_bench.streaming_llm.settings import CACHE, SINKS_FIT_CACHE
from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache, cache_kwargs


def _reset_peak(device: str) -> None:
    if is_cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if is_cuda(device) else None


@torch.no_grad()
def chunked_rate(model: Any, policy: CachePolicy, ids: torch.Tensor, chunk: int, device: str) -> dict[str, Any]:
    """Stream `ids` through the exact chunked evaluator; tokens/s overall and once the window is full.

    Args:
        ids: (N + 1,) token ids; N positions are scored.
        chunk: tokens per forward.

    Returns:
        {"tok_s", "tok_s_full", "seconds", "tokens", "full_chunks", "nll_mean", "nonfinite", "peak_mem_mb"}.
    """
    x, y = ids[:-1].to(device), ids[1:].to(device)
    n = x.numel()
    warm = ChunkedEvaluator(adapter_for(model), policy)  # untimed: kernel selection, allocator warm-up
    warm.nll(x[: min(chunk, n)], y[: min(chunk, n)])
    del warm
    _reset_peak(device)
    clock = DeviceClock(device)
    ev = ChunkedEvaluator(adapter_for(model), policy)
    marks, nll = [clock.mark()], []
    starts = list(range(0, n, chunk))
    for s in starts:
        nll.append(ev.nll(x[s:s + chunk], y[s:s + chunk]))  # (C,) fp32
        marks.append(clock.mark())  # no sync here: marks are read after the loop
    ms = [clock.ms(a, b) for a, b in zip(marks[:-1], marks[1:])]
    total_s = sum(ms) / 1e3
    cap = policy.capacity or n
    # A chunk whose first query (stream index s) already has a full window (s >= S + R) costs what every
    # later chunk of a long stream costs.
    full = [(min(s + chunk, n) - s, t) for s, t in zip(starts, ms) if s >= cap]
    full_tok, full_ms = sum(k for k, _ in full), sum(t for _, t in full)
    allnll = torch.cat(nll).float()
    return {"tok_s": n / total_s, "tok_s_full": full_tok / (full_ms / 1e3) if full else float("nan"),
            "seconds": total_s, "tokens": n, "full_chunks": len(full),
            "nll_mean": float(allnll.mean()), "nonfinite": int((~torch.isfinite(allnll)).sum()),
            "peak_mem_mb": _peak_mb(device)}


@torch.no_grad()
def sink_cache_rate(model: Any, policy: CachePolicy, ids: torch.Tensor, steps: int, device: str,
                    warmup: int = 2) -> dict[str, Any]:
    """Token-by-token `SinkCache` decoding of a full cache: median step time -> tokens/s.

    The cache is filled with its first S+R tokens in one forward, so every timed step evicts, as in the
    steady state of a long stream.
    """
    if policy.window is None:
        raise ConfigError("experiment.n_sink", "token-by-token SinkCache needs a bounded window")
    cap = policy.capacity
    if ids.numel() < cap + warmup + steps + 1:
        raise ConfigError("experiment.sink_steps", f"{ids.numel()} tokens cannot fill a {cap}-token cache and "
                          f"take {warmup}+{steps} steps")
    ids = ids.to(device)
    cache = SinkCache(policy.n_sink, policy.window, rope_of(model))
    model(ids[None, :cap], position_ids=cache.position_ids(cap, device), use_cache=True, **cache_kwargs(model, cache))
    clock = DeviceClock(device)
    samples = []
    _reset_peak(device)
    for i in range(warmup + steps):
        t = cap + i
        a = clock.mark()
        logits = model(ids[None, t:t + 1], position_ids=cache.position_ids(1, device),
                       use_cache=True, **cache_kwargs(model, cache)).logits[0, -1]
        F.cross_entropy(logits.float()[None], ids[t + 1:t + 2])
        dt = clock.ms(a, clock.mark())
        if i >= warmup:
            samples.append(dt)
    t = summarize(samples)
    return {"tok_s": 1e3 / t.median_ms, "step_ms": t.median_ms, "step_iqr_ms": t.iqr_ms, "steps": t.n,
            "peak_mem_mb": _peak_mb(device)}


@dataclass
class EvalSpeedSettings:
    """`experiment.*` of eval_speed; defaults as Fig. 5's Llama-2 run (4+2044, 4M tokens)."""

    n_sink: int = setting(4, nonneg_int(), "S attention sinks")
    cache: int = setting(2048, CACHE, "L = S + R (Fig. 5, Llama-2: 4+2044)")
    tokens: int = setting(65536, pos_int(), "stream the chunked evaluator times")
    sink_steps: int = setting(64, pos_int(hi=100_000), "token-by-token steps sampled on a full cache")
    project_tokens: int = setting(4_000_000, pos_int(), "stream length both rates are projected to")


EVAL_SPEED_RULES = [
    SINKS_FIT_CACHE,
    Rule(("tokens", "cache", "/eval.chunk"), lambda n, c, k: n > c + k,
         "{0} tokens do not pass the {1}-token cache by a chunk (eval.chunk {2})", "tokens"),
]


@experiment(settings=EvalSpeedSettings, rules=EVAL_SPEED_RULES)
def eval_speed(ctx: RunContext) -> None:
    """Tokens/s of the exact chunked evaluator vs token-by-token SinkCache, and the projected 4M-token time."""
    from llm_efficiency_bench.core.models import load_model

    e, cfg = ctx.cfg.experiment, ctx.cfg
    lm = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device, data_dir=cfg.data_dir, speed_only=True)
    S, L = int(e.n_sink), int(e.cache)
    if lm.context and L > lm.context:
        raise ConfigError("experiment.cache", f"cache {L} exceeds {lm.name}'s context {lm.context}")
    policy = CachePolicy(S, L - S)
    n, chunk, steps, project = int(e.tokens), int(ctx.cfg.eval.chunk), int(e.sink_steps), int(e.project_tokens)
    vocab = int(getattr(getattr(lm.model.config, "text_config", lm.model.config), "vocab_size"))
    ids = torch.randint(3, vocab, (n + 1,), generator=torch.Generator().manual_seed(int(cfg.seed)))
    ctx.log(f"{lm.name} {lm.dtype} on {lm.device}: chunked {policy.label()} over {n:,} tokens (chunk {chunk}), "
            f"then {steps} SinkCache steps")
    ch = chunked_rate(lm.model, policy, ids, chunk, lm.device)
    if ch["nonfinite"]:  # timings stand (NaNs cost the same), but the record must say it
        ctx.log("WARNING: non-finite NLL in the chunked stream (fp16 overflow of random weights?)")
    tb = sink_cache_rate(lm.model, policy, ids, steps, lm.device)
    clock = DeviceClock(lm.device).kind
    rate = ch["tok_s_full"] if ch["full_chunks"] else ch["tok_s"]
    note = speed_note(cfg.model, f"{policy.label()}, {clock}")
    ctx.metric("eval_tok_s.chunked", ch["tok_s"], "tokens/s", "higher",
               note=f"{note}; whole {n:,}-token stream incl. the filling window, chunk {chunk}")
    ctx.metric("eval_tok_s.chunked_full_window", ch["tok_s_full"], "tokens/s", "higher",
               note=f"{note}; the {ch['full_chunks']} chunks after the window filled")
    ctx.metric("eval_tok_s.sink_cache", tb["tok_s"], "tokens/s", "higher",
               note=f"{note}; median of {tb['steps']} single-token steps on a full cache (logits + NLL)")
    ctx.metric("eval_speedup.chunked_over_sink_cache", rate / tb["tok_s"], "x", "higher", kind="timing", note=note)
    ctx.metric("projected_s.chunked", project / rate, "s", "lower",
               note=f"{note}; {project:,} tokens at the full-window rate")
    ctx.metric("projected_s.sink_cache", project / tb["tok_s"], "s", "lower",
               note=f"{note}; {project:,} tokens, one per step (the paper's Fig. 5 loop)")
    for name, r in (("chunked", ch), ("sink_cache", tb)):
        if r["peak_mem_mb"] is not None:
            ctx.metric(f"peak_mem_mb.{name}", r["peak_mem_mb"], "MiB", "lower",
                       note=speed_note(cfg.model, "torch.cuda.max_memory_allocated, reset between the methods"))
    ctx.log(f"chunked: mean NLL {ch['nll_mean']:.3f} (sanity only: random weights give about log(vocab))")
    ctx.metric("nonfinite_nll.chunked", float(ch["nonfinite"]), "count", "lower",
               note="non-finite NLL values in the chunked stream (timings stand either way)")
    rows = [{"method": f"chunked {policy.label()} (chunk {chunk})", "tokens/s": rate,
             "tokens/s (whole stream)": ch["tok_s"], "timed tokens": n, "peak MiB": ch["peak_mem_mb"],
             f"projected h ({project / 1e6:g}M)": project / rate / 3600},
            {"method": f"token-by-token SinkCache {policy.label()}", "tokens/s": tb["tok_s"],
             "tokens/s (whole stream)": None, "timed tokens": tb["steps"], "peak MiB": tb["peak_mem_mb"],
             f"projected h ({project / 1e6:g}M)": project / tb["tok_s"] / 3600}]
    dev = ctx.record.env.get("device_name", lm.device)
    ctx.table("eval_speed", f"Exact chunked evaluator vs token-by-token SinkCache — {lm.name}, "
              f"{str(lm.dtype).replace('torch.', '')}, {dev}", rows,
              notes=[f"tokens/s of the chunked row = chunks after the window filled; {clock}",
                     "SinkCache: median step on a full cache; both score every position (logits + NLL)",
                     *([f"{cfg.model.name}: {SPEED_ONLY_NOTE} (seeded random token ids)"]
                       if is_random(cfg.model) else [])])
