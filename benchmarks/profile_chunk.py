"""Where the time of one chunk goes: SmolLM2-135M, cache 4+1020, one 512-token chunk in steady state.

    OMP_NUM_THREADS=2 python -m benchmarks.profile_chunk [--dtype bfloat16] [--chunk 512] [--attention band]

Wraps the evaluator's pieces in `record_function` labels (qkv = norm + Q/K/V projections, rope, attention,
finish = o_proj + residual + MLP, lm_head = final norm + LM head, nll = log-softmax + gather) and prints
the torch-profiler time per label and the top ops by self time. Not a test: a diagnostic of where a chunk's time goes.
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf
from torch.profiler import ProfilerActivity, profile, record_function

from bench.core.paths import REPO_ROOT
from bench.streaming_llm import engine
from bench.streaming_llm.adapters import adapter_for
from bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator

LABELS = ("qkv", "rope", "attention", "finish", "lm_head", "nll", "state")


def _wrap(obj, name: str, label: str) -> None:
    fn = getattr(obj, name)

    def wrapped(*a, **k):
        with record_function(label):
            return fn(*a, **k)

    setattr(obj, name, wrapped)


def instrument(ev: ChunkedEvaluator) -> None:
    """Label the evaluator's pieces (instance attributes shadow the methods; the module function is patched)."""
    a = ev.a
    for name, label in (("qkv", "qkv"), ("finish", "finish"), ("logits", "lm_head")):
        _wrap(a, name, label)
    _wrap(a.rope, "apply", "rope")
    _wrap(a.rope, "rotate", "rope")
    _wrap(ev, "_update_state", "state")
    for name in ("sink_band_attention", "split_band_attention"):
        if hasattr(engine, name):
            _wrap(engine, name, "attention")
    _wrap(engine, "token_nll", "nll") if hasattr(engine, "token_nll") else _wrap(torch.nn.functional, "cross_entropy", "nll")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--window", type=int, default=1020)
    ap.add_argument("--rows", type=int, default=15)
    a = ap.parse_args(argv)
    from bench.core.models import load_model

    lm = load_model(OmegaConf.load(REPO_ROOT / "configs/model/smollm2_135m.yaml"), dtype=a.dtype)
    ids = torch.randint(0, 40000, (a.sinks + a.window + 3 * a.chunk + 1,), generator=torch.Generator().manual_seed(0))
    ev = ChunkedEvaluator(adapter_for(lm.model), CachePolicy(a.sinks, a.window))
    warm = a.sinks + a.window
    ev.nll(ids[:warm], ids[1:warm + 1])  # steady state: the band is full (r = R)
    ev.nll(ids[warm:warm + a.chunk], ids[warm + 1:warm + a.chunk + 1])  # warm-up chunk (kernels, allocator)
    instrument(ev)
    s = warm + a.chunk
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ev.nll(ids[s:s + a.chunk], ids[s + 1:s + a.chunk + 1])
    wall = time.perf_counter() - t0
    ev_avg = prof.key_averages()
    by_label = {e.key: e.cpu_time_total / 1e3 for e in ev_avg if e.key in LABELS}
    total_self = sum(e.self_cpu_time_total for e in ev_avg) / 1e3
    print(f"\none {a.chunk}-token chunk, {a.dtype}, cache {a.sinks}+{a.window}, threads {torch.get_num_threads()}: "
          f"{wall * 1e3:.0f} ms wall under the profiler ({a.chunk / wall:.0f} tok/s)")
    print("| piece | ms | share of profiled self time |\n|---|---|---|")
    for k in LABELS:
        if k in by_label:
            print(f"| {k} | {by_label[k]:.1f} | {by_label[k] / total_self:.1%} |")
    rest = total_self - sum(by_label.values())
    print(f"| other (embed, glue) | {rest:.1f} | {rest / total_self:.1%} |")
    print(ev_avg.table(sort_by="self_cpu_time_total", row_limit=a.rows))


if __name__ == "__main__":
    main()
