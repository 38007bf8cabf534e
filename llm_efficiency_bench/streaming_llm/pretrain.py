"""Pre-training with a dedicated attention sink (paper Sec. 3.3, Table 3 / Table 10).

The paper trains Pythia-160M from scratch three times and streams each with 0, 1, 2 and 4 initial tokens
kept in a cache of 1024:

- `vanilla`: ordinary causal LM training;
- `sink`: one learnable placeholder token (a dedicated special token) at position 0 of every training
  sample, so the model can learn to park unneeded attention on it; streaming then keeps only that token;
- `zero_sink`: SoftMax-off-by-one ("SoftMax1", Miller 2023): softmax with 1 added to the denominator,
  i.e. attention may sum to less than one.

Here the same protocol runs on tiny Llamas trained by the suite (`llm_efficiency_bench.core.tiny`): same books, same token
budget, same seed and initial weights for every variant; each trained model is cached under
`cache_dir()/sink_pretrain/` keyed by its settings. Perplexity comes from the exact chunked evaluator
(`engine.py`, via `ppl.evaluate`). SoftMax1 is evaluated with that same evaluator through
`NullKeyAdapter`: one extra sink whose key and value are zero in every layer has logit q.0 = 0 and adds
exactly exp(0) = 1 to every softmax denominator and nothing to the numerator.

Because a CPU budget is far below the paper's (143k steps of batch 256 on 8 GPUs), the experiment also
records how much attention each variant puts on position 0 (the sink) per layer and during training, so a
missing effect can be told apart from a broken method.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from llm_efficiency_bench.core.cache import CacheEntry, config_key, save_atomic, to_plain
from llm_efficiency_bench.core.data import Document, load_documents
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.references import paper_table
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.tiny import llama_config, train_bpe_tokenizer, train_causal_lm
from llm_efficiency_bench.core.validate import Choice, ListOf, Num, Rule, nonneg_int, pos_float, pos_int
from llm_efficiency_bench.streaming_llm import figures
from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.attention import last_row_attention
from llm_efficiency_bench.streaming_llm.engine import CachePolicy
from llm_efficiency_bench.streaming_llm.ppl import Stream, build_stream, evaluate, ppl
from llm_efficiency_bench.streaming_llm.settings import CACHE, SINK_COUNTS_FIT_CACHE
from llm_efficiency_bench.streaming_llm.softmax1 import SOFTMAX1, NullKeyAdapter, register_softmax1, softmax1_attention  # noqa: F401

PAPER = "streaming_llm"
VARIANTS = ("vanilla", "sink", "zero_sink")
SINK_TOKEN = "<|sink|>"
ARCH = pos_int(hi=65536)  # range of every `experiment.arch.*` size


# --------------------------------------------------------------------------------------------------------
# Training (cached)
# --------------------------------------------------------------------------------------------------------

def prepend_sink(batch: torch.Tensor, sink_id: int) -> torch.Tensor:
    """Put the sink token at position 0 of every training window (paper Sec. 3.3).

    Args:
        batch: (B, T+1) token windows; the model reads [:, :-1] and predicts [:, 1:].

    Returns:
        (B, T+1): [sink, x_0 .. x_{T-1}]. The window keeps T inputs and T text targets (x_0 .. x_{T-1}), so
        every variant trains on the same context length and the same number of predicted tokens.
    """
    sink = torch.full((batch.shape[0], 1), sink_id, dtype=batch.dtype, device=batch.device)
    return torch.cat([sink, batch[:, :-1]], dim=1)


@dataclass
class Pretrained:
    """One trained variant, loaded from its cache folder."""

    variant: str
    model: Any
    tokenizer: Any
    folder: Path
    info: dict[str, Any]
    cached: bool  # True when loaded without training in this call

    @property
    def sink_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(SINK_TOKEN))

    def adapter(self) -> Any:
        a = adapter_for(self.model)
        return NullKeyAdapter(a) if self.variant == "zero_sink" else a

    def prefix(self) -> list[int] | None:
        """Tokens fed before a stream: the learned sink, the null-key slot of SoftMax1, or nothing."""
        if self.variant == "sink":
            return [self.sink_id]
        if self.variant == "zero_sink":
            return [int(self.tokenizer.pad_token_id or 0)]  # its key/value are zeroed by NullKeyAdapter
        return None

    def policy(self, n_sink: int, window: int) -> CachePolicy:
        """The paper's S+R cache for this variant (SoftMax1's null key is an extra, free sink)."""
        return CachePolicy(n_sink + (1 if self.variant == "zero_sink" else 0), window)


CACHE_KIND = "sink_pretrain"  # BENCH_CACHE/sink_pretrain/{tokenizer,<variant>}-<key>


def training_text(docs: list[Document], max_chars: int) -> str:
    """The training books concatenated (in order) and cut to `max_chars` characters."""
    parts, total = [], 0
    for d in docs:
        parts.append(d.text)
        total += len(d.text) + 1
        if total >= max_chars:
            break
    return "\n".join(parts)[:max_chars]


def cached_tokenizer(text: str, vocab: int) -> tuple[Any, torch.Tensor, str]:
    """A BPE tokenizer with the sink special token, trained once on `text`, and `text` tokenized.

    Returns:
        (tokenizer, 1-D token ids of `text`, cache key). The same tokenizer serves every variant, so the
        vocabulary (and the initial weights) are identical; only `sink` ever sees the sink token.
    """
    from transformers import AutoTokenizer

    entry = CacheEntry(CACHE_KIND, "tokenizer", [text, {"vocab": vocab, "special": SINK_TOKEN}])
    entry.adopt("ids.pt")  # folders of the earlier layout: same path, no done.json

    def build(work: Path) -> dict[str, Any]:
        tok = train_bpe_tokenizer(text, vocab, extra_special=[SINK_TOKEN])
        tok.save_pretrained(work)
        save_atomic(work / "ids.pt", torch.tensor(tok(text).input_ids, dtype=torch.long))
        return {"vocab": vocab}

    out = entry.get_or_build(build)
    tok = AutoTokenizer.from_pretrained(str(out))
    return tok, torch.load(out / "ids.pt"), entry.key


def pretrain_variant(variant: str, arch: dict[str, Any], train: dict[str, Any], tok: Any, ids: torch.Tensor,
                     tok_key: str, probe: Callable[[Pretrained], list[float]] | None = None,
                     probe_points: int = 0, probe_key: str = "", device: str = "cpu",
                     log: Callable[[str], None] = print) -> Pretrained:
    """Train (once) and cache one variant; later calls with the same settings load it.

    Args:
        variant: "vanilla", "sink" or "zero_sink".
        arch: hidden, intermediate, layers, heads, (kv_heads, rope_theta).
        train: steps, batch, seq_len (the training context T), lr, seed, (warmup, weight_decay).
        tok, ids, tok_key: from `cached_tokenizer`.
        probe: optional function of the model under training returning a per-layer attention share; it is
            called `probe_points` times during training (evidence of when, or whether, a sink appears).
        probe_key: identifies the probe's data (part of the cache key, as the probes are stored with it).
        device: where to train; the returned model is always on the CPU (the exact evaluator's path).

    Returns:
        The trained model (eval mode, fp32, CPU) with `info`: losses, train_seconds, probes.
    """
    from transformers import LlamaForCausalLM

    if variant not in VARIANTS:
        raise ConfigError("experiment.variants", f"unknown variant {variant!r}; choose from {VARIANTS}")
    entry = CacheEntry(CACHE_KIND, variant, [tok_key, arch, train, variant,
                                             {"probe_points": probe_points if probe is not None else 0,
                                              "probe": probe_key}])
    attn = SOFTMAX1 if variant == "zero_sink" else "sdpa"
    if entry.adopt("training.json"):  # built earlier (either cache layout): load, never retrain
        model = LlamaForCausalLM.from_pretrained(str(entry.dir), attn_implementation=attn).eval()
        info = json.loads((entry.dir / "training.json").read_text())
        return Pretrained(variant, model, tok, entry.dir, info, cached=True)
    out = entry.dir
    seq, steps = int(train["seq_len"]), int(train["steps"])
    torch.manual_seed(int(train["seed"]))  # same initial weights for every variant
    config = llama_config(arch, len(tok), seq)
    config._attn_implementation = attn
    model = LlamaForCausalLM(config).to(device)
    pre = Pretrained(variant, model, tok, out, {}, cached=False)
    batch_fn = (lambda b: prepend_sink(b, pre.sink_id)) if variant == "sink" else None
    probes: list[dict[str, Any]] = []
    every = max(1, steps // probe_points) if probe_points else 0
    bar = tqdm(total=steps, desc=f"train {variant}", unit="step", mininterval=5)

    def on_step(step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if probe is not None and every and ((step + 1) % every == 0 or step + 1 == steps):
            probes.append({"step": step + 1, "share": _probe(probe, pre)})

    if probe is not None and probe_points:
        probes.append({"step": 0, "share": _probe(probe, pre)})
    t0 = time.time()
    losses = train_causal_lm(model, ids, train, batch_fn=batch_fn, log=log, on_step=on_step)
    seconds = time.time() - t0
    bar.close()
    model = model.cpu()
    info = {"variant": variant, "train_seconds": seconds, "losses": losses, "probes": probes,
            "tokens_seen": steps * int(train["batch"]) * seq, "corpus_tokens": ids.numel(),
            "arch": arch, "train": train, "tokenizer": tok_key, "sink_token": SINK_TOKEN}


    def publish(work: Path) -> dict[str, Any]:
        model.save_pretrained(work)
        tok.save_pretrained(work)
        (work / "training.json").write_text(json.dumps(info))
        return {"variant": variant}

    # Trained outside the builder: the probes need the model under training, and two jobs training the same
    # variant at once only cost time; the lock still lets exactly one publish.
    entry.get_or_build(publish)
    return Pretrained(variant, model.eval(), tok, out, info, cached=False)


def _probe(probe: Callable[[Pretrained], list[float]], pre: Pretrained) -> list[float]:
    """Run `probe` on the model under training, on the CPU and in eval mode, then restore both."""
    model = pre.model
    device = next(model.parameters()).device
    model.eval()
    try:
        if device.type != "cpu":
            model.cpu()
        return probe(pre)
    finally:
        model.to(device).train()


# --------------------------------------------------------------------------------------------------------
# Evidence: attention on position 0
# --------------------------------------------------------------------------------------------------------

def probe_windows(stream: Stream, count: int, length: int) -> list[torch.Tensor]:
    """`count` windows of `length` held-out tokens (1-D each), every other window from token `length` on.

    The positions do not depend on how many tokens are evaluated, so the probes cached with a trained
    model stay valid when only the evaluation length changes.
    """
    n = stream.inputs.numel()
    need = length * (2 * count + 1)
    if n < need:
        raise ConfigError("experiment.probe_windows", f"the held-out books have {n:,} tokens, fewer than the "
                          f"{need:,} that {count} probe windows of {length} need")
    return [stream.inputs[s:s + length] for s in range(length, need, 2 * length)]


@torch.no_grad()
def position0_share(pre: Pretrained, windows: list[torch.Tensor]) -> list[float]:
    """Mean attention of the last query on position 0, per layer (mean over heads and windows).

    Position 0 is the first text token (`vanilla`), the learned sink token (`sink`), or SoftMax1's null key
    (`zero_sink`: its share is 1 / (1 + sum exp(scores)), the attention the model chose not to spend). Each
    window keeps the same length: the prefix replaces its first token.
    """
    adapter = pre.adapter()
    prefix = pre.prefix()
    total = None
    for w in windows:
        ids = torch.cat([torch.tensor(prefix, dtype=w.dtype), w[1:]]) if prefix else w
        if isinstance(adapter, NullKeyAdapter):
            adapter.arm()
        rows = last_row_attention(adapter, ids)[:, :, 0].mean(dim=1)  # (layers,)
        total = rows if total is None else total + rows
    return [float(x) for x in total / len(windows)]


# --------------------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------------------

def _final_loss(losses: list[float]) -> float:
    tail = losses[-max(1, len(losses) // 10):]
    return sum(tail) / len(tail)


@dataclass
class ArchSettings:
    """The Llama trained per variant (`experiment.arch.*`); defaults: Pythia-160M's width, depth and heads."""

    hidden: int = setting(768, ARCH, "hidden size")
    intermediate: int = setting(2048, ARCH, "MLP size")
    layers: int = setting(12, ARCH, "decoder layers")
    heads: int = setting(12, ARCH, "attention heads")
    kv_heads: int = setting(12, ARCH, "key/value heads")


@dataclass
class TrainSettings:
    """Training of every variant (`experiment.train.*`), chosen once, before any result was seen."""

    steps: int = setting(20000, pos_int(), "optimizer steps (the paper: 143k)")
    batch: int = setting(32, pos_int(hi=65536), "windows per step")
    seq_len: int = setting(2048, Num(int, 2, 1 << 20), "training context T")
    lr: float = setting(0.002, pos_float(hi=10), "peak learning rate (AdamW, cosine decay)")
    warmup: int = setting(1000, nonneg_int(), "warm-up steps")
    weight_decay: float = setting(0.1, Num(float, 0, 10), "AdamW weight decay")
    seed: int = setting(0, nonneg_int(), "seed of the initial weights and the windows (the same for every variant)")


@dataclass
class SinkPretrainSettings:
    """Table 3 (`experiment.*`); defaults: a GPU-sized budget (not the paper's 143k steps x 256 sequences)."""

    variants: list[str] = setting(list(VARIANTS), ListOf(Choice(VARIANTS), unique=True),
                                  "vanilla | sink (learnable sink token) | zero_sink (SoftMax1)")
    arch: ArchSettings = setting(ArchSettings(), None, "the model trained per variant")
    vocab: int = setting(16384, Num(int, 260, 1 << 20), "BPE vocabulary of the training books (256 bytes + "
                         "specials at least), plus <|sink|>")
    max_chars: int = setting(40_000_000, pos_int(), "characters of training text (the books in name order, minus "
                             "the held-out ones)")
    holdout_books: int = setting(2, pos_int(hi=1000), "the last books by name, never trained on, are streamed")
    train: TrainSettings = setting(TrainSettings(), None, "training of every variant")
    cache: int = setting(1024, CACHE, "L; at most T (the paper: L = 1024 for a 2048 context)")
    sink_counts: list[int] = setting([0, 1, 2, 4], ListOf(nonneg_int(), unique=True),
                                     "initial tokens kept in the cache of L, one stream each")
    eval_tokens: int = setting(65536, pos_int(), "held-out tokens streamed per variant and sink count")
    probe_windows: int = setting(8, pos_int(hi=100_000), "held-out windows for the attention-on-position-0 evidence")
    probe_points: int = setting(10, pos_int(hi=100_000), "times the position-0 share is measured during training")


SINK_PRETRAIN_RULES = [
    SINK_COUNTS_FIT_CACHE,
    Rule(("cache", "train.seq_len"), lambda c, t: c <= t,
         "the streaming cache {0} must be at most the training context {1} (Sec. 3.3)", "cache"),
    Rule(("arch.hidden", "arch.heads"), lambda h, n: h % n == 0,
         "hidden size {0} must be a multiple of the {1} heads", "arch.heads"),
    Rule(("arch.heads", "arch.kv_heads"), lambda n, kv: n % kv == 0,
         "the {0} heads must be a multiple of the {1} key/value heads", "arch.kv_heads"),
]


@experiment(settings=SinkPretrainSettings, rules=SINK_PRETRAIN_RULES, figures=figures.draw_table3)
def sink_pretrain(ctx: RunContext) -> None:
    """Table 3: tiny Llamas pre-trained without / with a learnable sink token / with SoftMax1, streamed with
    0, 1, 2, 4 initial tokens at a fixed total cache L."""
    e, cfg = ctx.cfg.experiment, ctx.cfg
    variants = [str(v) for v in e.variants]
    arch, train = to_plain(e.arch), to_plain(e.train)
    T, L = int(train["seq_len"]), int(e.cache)
    counts = [int(s) for s in e.sink_counts]
    docs = load_documents(cfg.data, cfg.data_dir)
    held = int(e.holdout_books)
    if not 1 <= held < len(docs):
        raise ConfigError("experiment.holdout_books", f"need 1 <= holdout_books < {len(docs)} books")
    train_docs, eval_docs = docs[:-held], docs[-held:]
    text = training_text(train_docs, int(e.max_chars))
    t0 = time.time()
    tok, ids, tok_key = cached_tokenizer(text, int(e.vocab))
    ctx.log(f"tokenizer ({len(tok)} tokens incl. {SINK_TOKEN}) and {ids.numel():,} training tokens from "
            f"{len(train_docs)} books in {time.time() - t0:.1f} s; held out: {', '.join(d.name for d in eval_docs)}")
    n_eval = int(e.eval_tokens)
    token_docs = [(d.name, tok(d.text).input_ids) for d in eval_docs]  # each book separately, as Table 2
    stream = build_stream(token_docs, n_eval)
    if stream.inputs.numel() < n_eval or n_eval <= L:
        raise ConfigError("experiment.eval_tokens", f"need {L} < eval_tokens <= {stream.inputs.numel():,} "
                          "(the held-out books' length); the stream must be longer than the cache")
    windows = probe_windows(build_stream(token_docs, None), int(e.probe_windows), T)
    probe_key = config_key([[w.tolist() for w in windows]])

    trained: dict[str, Pretrained] = {}
    for v in variants:
        pre = pretrain_variant(v, arch, train, tok, ids, tok_key, probe=lambda p: position0_share(p, windows),
                               probe_points=int(e.probe_points), probe_key=probe_key, device=str(cfg.device),
                               log=ctx.log)
        secs = float(pre.info["train_seconds"])
        ctx.log(f"{v}: {'loaded from cache' if pre.cached else 'trained'} {pre.folder.name} "
                f"(training took {secs:.0f} s, final loss {_final_loss(pre.info['losses']):.3f})")
        trained[v] = pre

    results: dict[str, dict[int, float]] = {v: {} for v in variants}
    rows_t3, rows_long = [], []
    for v, pre in trained.items():
        adapter = pre.adapter()
        for s in counts:
            if isinstance(adapter, NullKeyAdapter):
                adapter.arm()  # the prefix chunk becomes the null key
            t1 = time.time()
            nll = evaluate(adapter, pre.policy(s, L - s), stream, int(cfg.eval.chunk), prefix=pre.prefix(),
                           desc=f"{v} {s}+{L - s}")
            val = ppl(nll)
            bad = int((~torch.isfinite(nll)).sum())
            results[v][s] = val
            ctx.log(f"{v} {s}+{L - s}: PPL {val:.3f} ({nll.numel():,} tokens, {time.time() - t1:.1f} s, "
                    f"non-finite {bad})")
            ctx.metric(f"ppl.{v}.{s}+{L - s}", val, "ppl", "lower",
                       note=f"{nll.numel():,} held-out tokens; cache {L}, trained context {T}")
            rows_long.append({"variant": v, "cache": f"{s}+{L - s}", "n_sink": s, "ppl": val,
                              "tokens": nll.numel(), "non_finite": bad})
        r = results[v]
        row: dict[str, Any] = {"variant": v}
        row.update({f"{s}+{L - s}": r[s] for s in counts})
        if 0 in r and 4 in r:
            row["0+L / 4+(L-4)"] = r[0] / r[4]
            ctx.metric(f"ratio.{v}.0_over_4", r[0] / r[4], "x", "none",
                       note=f"ppl {v} 0+{L} / 4+{L - 4}; paper Table 3 vanilla 27.87/18.05, sink 1235/18.02")
        if 1 in r and 4 in r:
            row["1+(L-1) / 4+(L-4)"] = r[1] / r[4]
            ctx.metric(f"ratio.{v}.1_over_4", r[1] / r[4], "x", "none",
                       note=f"ppl {v} 1+{L - 1} / 4+{L - 4}; paper vanilla 18.49/18.05, sink 18.01/18.02")
        rows_t3.append(row)
    if "sink" in results and "vanilla" in results and 1 in counts and 4 in counts:
        ctx.metric("ratio.sink1_over_vanilla4", results["sink"][1] / results["vanilla"][4], "x", "none",
                   note="sink model with its one sink vs vanilla with 4 initial tokens; paper 18.01/18.05")

    # Training cost and the attention evidence.
    rows_train, rows_share, rows_steps = [], [], []
    for v, pre in trained.items():
        info = pre.info
        share = position0_share(pre, windows)
        med = statistics.median(share)
        ctx.metric(f"train_s.{v}", float(info["train_seconds"]), "s", "lower",
                   note=f"{info['train']['steps']} steps; {'cached from an earlier run' if pre.cached else 'this run'}")
        ctx.metric(f"train_loss.{v}", _final_loss(info["losses"]), "nats", "lower",
                   note="mean of the last 10% of steps (the sink variant also predicts x_0 from the sink alone)")
        ctx.metric(f"sink_share.{v}.median_layers", med, "fraction", "none",
                   note=f"attention of the last query of a {T}-token held-out window on position 0, median over "
                        f"layers; uniform would be {1 / T:.4f}")
        for k, x in enumerate(share):
            ctx.metric(f"sink_share.{v}.layer{k}", x, "fraction", "none")
            rows_share.append({"variant": v, "layer": k, "share_position0": x, "uniform": 1 / T})
        rows_train.append({"variant": v, "steps": info["train"]["steps"], "tokens_seen": info["tokens_seen"],
                           "train_s": float(info["train_seconds"]), "final_loss": _final_loss(info["losses"]),
                           "position0_share_median": med, "cached": pre.cached})
        for p in info.get("probes", []):
            rows_steps.append({"variant": v, "step": p["step"], "share_median": statistics.median(p["share"]),
                               "share_max": max(p["share"])})
    ctx.metric("train_tokens", float(rows_train[0]["tokens_seen"]), "tokens", "none", note="per variant")

    cols = ["variant", *[f"{s}+{L - s}" for s in counts], "0+L / 4+(L-4)", "1+(L-1) / 4+(L-4)"]
    # Table 3 / Table 10 of the paper (Pythia-160M from scratch, cache 1024), from references/streaming_llm.yaml.
    t3 = paper_table(PAPER, "table3")
    paper_rows = " ; ".join(f"{v}: " + ", ".join(f"{c} {x:g}" for c, x in zip(t3["cols"], t3[v]))
                            for v in ("vanilla", "zero_sink", "sink"))
    a = arch
    ctx.table("table3", f"Table 3 — tiny Llamas pre-trained from scratch ({a['layers']} layers, hidden "
              f"{a['hidden']}, vocab {len(tok)}, context {T}, {train['steps']} steps x {train['batch']} x {T} "
              f"tokens), streaming PPL on {stream.inputs.numel():,} held-out tokens, cache {L}",
              rows_t3, columns=[c for c in cols if any(c in r for r in rows_t3)],
              notes=[f"held-out books: {', '.join(stream.doc_names)}; sink model: the stream starts with the "
                     "sink token, so 1+(L-1) keeps exactly that token; zero_sink: SoftMax1 (its null key is free)",
                     f"paper (Pythia-160M, 143k steps, cache 1024): {paper_rows}"])
    ctx.csv("table3_long", rows_long)
    ctx.table("training", f"Training — same books, token budget, seed and initial weights per variant "
              f"(lr {train['lr']}, batch {train['batch']}, context {T})", rows_train, digits=3,
              notes=["position-0 share: mean attention of the last query of held-out windows on position 0 "
                     f"(text token / sink token / SoftMax1 null key), median over layers; uniform = {1 / T:.4f}"])
    ctx.table("sink_share", "Attention on position 0 per layer (last query of held-out windows)", rows_share,
              digits=4)
    if rows_steps:
        ctx.csv("sink_share_vs_steps", rows_steps)
