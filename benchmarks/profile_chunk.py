"""Where the time goes, per token: the chunked evaluator and token-by-token decoding through SinkCache.

    OMP_NUM_THREADS=2 python -m benchmarks.profile_chunk [--path both|chunk|token] [--dtype float32]
                                                         [--chunk 512] [--tokens 32]

SmolLM2-135M, cache 4+1020, in steady state (the cache full). `chunk`: one CHUNK-token chunk of the
evaluator, its pieces in `record_function` labels (qkv = norm + Q/K/V projections, rope, attention, finish =
o_proj + residual + MLP, lm_head = final norm + LM head, nll = log-softmax + gather, state = cache update).
`token`: TOKENS decoding steps of the stock model with a SinkCache, as `test_chunked_vs_token_by_token`
runs them, labelled by module (embed, norm, qkv, o_proj, mlp, lm_head, rope_tables), the cache update
(`SinkLayer.update`: eviction, cat, sink re-rotation), the attention kernel and the NLL. For each path:
the unprofiled ms per token, the profiler's ms per token per label and the top ops by self time; the time
outside every op is Python (transformers' forward, mask building, dispatch). Not a test: a diagnostic of
the chunked-vs-token speed ratio (`make bench`, `chunked_vs_token.speedup`).
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack

import torch
from omegaconf import OmegaConf
from torch.profiler import ProfilerActivity, profile, record_function

from llm_efficiency_bench.core.paths import CONFIG_DIR, REPO_ROOT
from llm_efficiency_bench.streaming_llm import engine
from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator
from llm_efficiency_bench.streaming_llm.rope import rope_of
from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache, SinkLayer, cache_kwargs

LABELS = ("qkv", "rope", "attention", "finish", "lm_head", "nll", "state")
TOKEN_LABELS = ("embed", "rope_tables", "norm", "qkv", "cache", "attention", "o_proj", "mlp", "lm_head", "nll")
_MODULE_LABELS = {"embed_tokens": "embed", "rotary_emb": "rope_tables", "input_layernorm": "norm",
                  "post_attention_layernorm": "norm", "norm": "norm", "q_proj": "qkv", "k_proj": "qkv",
                  "v_proj": "qkv", "o_proj": "o_proj", "mlp": "mlp", "lm_head": "lm_head"}


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


def label_modules(model, stack: ExitStack) -> None:
    """Label the stock model's modules (forward hooks), the cache update and the attention kernel."""
    for name, mod in model.named_modules():
        label = _MODULE_LABELS.get(name.rsplit(".", 1)[-1])
        if label is None:
            continue
        open_ = []

        def pre(_m, _a, label=label, open_=open_):
            rf = record_function(label)
            rf.__enter__()
            open_.append(rf)

        def post(_m, _a, _o, open_=open_):
            open_.pop().__exit__(None, None, None)

        stack.callback(mod.register_forward_pre_hook(pre).remove)
        stack.callback(mod.register_forward_hook(post).remove)
    for owner, name, label in ((SinkLayer, "update", "cache"),
                               (torch.nn.functional, "scaled_dot_product_attention", "attention"),
                               (torch.nn.functional, "cross_entropy", "nll")):
        fn = getattr(owner, name)

        def wrapped(*a, fn=fn, label=label, **k):
            with record_function(label):
                return fn(*a, **k)

        setattr(owner, name, wrapped)
        stack.callback(setattr, owner, name, fn)


def _report(prof, labels, wall_s: float, n_tokens: int, title: str, rows: int) -> None:
    """ms per token per label, what no label covers, the time outside every op, and the top ops."""
    ev_avg = prof.key_averages()
    by_label = {e.key: e.cpu_time_total / 1e3 / n_tokens for e in ev_avg if e.key in labels}
    total_self = sum(e.self_cpu_time_total for e in ev_avg) / 1e3 / n_tokens  # labels' own (Python) time too
    wall = wall_s * 1e3 / n_tokens
    print(f"\n{title}: {wall:.2f} ms/token wall under the profiler\n| piece | ms/token | share of wall |\n|---|---|---|")
    for k in labels:
        if k in by_label:
            print(f"| {k} | {by_label[k]:.3f} | {by_label[k] / wall:.1%} |")
    rest = total_self - sum(by_label.values())
    print(f"| ops outside the labels (glue, masks, copies) | {rest:.3f} | {rest / wall:.1%} |")
    print(f"| outside every op (Python, dispatch) | {wall - total_self:.3f} | {(wall - total_self) / wall:.1%} |")
    print(ev_avg.table(sort_by="self_cpu_time_total", row_limit=rows))


def profile_chunk(lm, ids: torch.Tensor, a: argparse.Namespace) -> float:
    """Profile one chunk of the evaluator in steady state; returns its unprofiled ms per token."""
    ev = ChunkedEvaluator(adapter_for(lm.model), CachePolicy(a.sinks, a.window))
    warm = a.sinks + a.window
    ev.nll(ids[:warm], ids[1:warm + 1])  # steady state: the band is full (r = R)
    ev.nll(ids[warm:warm + a.chunk], ids[warm + 1:warm + a.chunk + 1])  # warm-up chunk (kernels, allocator)
    s = warm + a.chunk
    t0 = time.perf_counter()
    ev.nll(ids[s:s + a.chunk], ids[s + 1:s + a.chunk + 1])
    plain = (time.perf_counter() - t0) * 1e3 / a.chunk
    instrument(ev)
    s += a.chunk
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ev.nll(ids[s:s + a.chunk], ids[s + 1:s + a.chunk + 1])
    _report(prof, LABELS, time.perf_counter() - t0, a.chunk,
            f"chunked, one {a.chunk}-token chunk (unprofiled {plain:.2f} ms/token)", a.rows)
    return plain


@torch.no_grad()
def profile_tokens(lm, ids: torch.Tensor, a: argparse.Namespace) -> float:
    """Profile `a.tokens` SinkCache decoding steps in steady state; returns the unprofiled ms per token."""
    model = lm.model
    warm = a.sinks + a.window
    cache = SinkCache(a.sinks, a.window, rope_of(model))
    model(ids[None, :warm], position_ids=cache.position_ids(warm), use_cache=True, **cache_kwargs(model, cache))
    pos = [warm]

    def steps(n: int) -> None:
        for t in range(pos[0], pos[0] + n):
            logits = model(ids[None, t:t + 1], position_ids=cache.position_ids(1), use_cache=True,
                           **cache_kwargs(model, cache)).logits[0, -1]
            torch.nn.functional.cross_entropy(logits.float()[None], ids[t + 1:t + 2])
        pos[0] += n

    steps(a.tokens)  # warm-up: the cache evicts from here on
    t0 = time.perf_counter()
    steps(a.tokens)
    plain = (time.perf_counter() - t0) * 1e3 / a.tokens
    with ExitStack() as stack:
        label_modules(model, stack)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            steps(a.tokens)
        wall = time.perf_counter() - t0
    _report(prof, TOKEN_LABELS, wall, a.tokens,
            f"token by token, {a.tokens} SinkCache steps (unprofiled {plain:.2f} ms/token)", a.rows)
    return plain


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", choices=("both", "chunk", "token"), default="both")
    ap.add_argument("--dtype", default="float32", help="float32: the dtype of the chunked-vs-token benchmark")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=32, help="token-by-token steps profiled (after as many warm-up)")
    ap.add_argument("--sinks", type=int, default=4)
    ap.add_argument("--window", type=int, default=1020)
    ap.add_argument("--rows", type=int, default=15)
    a = ap.parse_args(argv)
    from llm_efficiency_bench.core.models import load_model

    lm = load_model(OmegaConf.load(CONFIG_DIR / "model/smollm2_135m.yaml"), dtype=a.dtype)
    n = a.sinks + a.window + max(3 * a.chunk, 2 * a.tokens) + 1
    ids = torch.randint(0, 40000, (n,), generator=torch.Generator().manual_seed(0))
    print(f"SmolLM2-135M {a.dtype}, cache {a.sinks}+{a.window}, threads {torch.get_num_threads()}")
    per_tok = {}
    if a.path in ("both", "chunk"):
        per_tok["chunk"] = profile_chunk(lm, ids, a)
    if a.path in ("both", "token"):
        per_tok["token"] = profile_tokens(lm, ids, a)
    if len(per_tok) == 2:
        print(f"\nunprofiled: token {per_tok['token']:.2f} ms/token, chunked {per_tok['chunk']:.2f} ms/token, "
              f"ratio {per_tok['token'] / per_tok['chunk']:.1f}x (one sample each: see make bench for the ratio)")


if __name__ == "__main__":
    main()
