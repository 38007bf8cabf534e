"""Attention-sink analysis (paper Fig. 2 and Fig. 12 / Sec. 3.1).

1. Average attention maps (eager attention) over many short sentences, per layer, averaged over heads:
   beyond the bottom two layers most heads put most of their attention on token 0.
2. The share of attention token 0 receives from a query late in a book (e.g. position 4096), per layer,
   computed exactly with the model's own projections (only the last query row is materialised).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import pos_int
from llm_efficiency_bench.streaming_llm import figures
from llm_efficiency_bench.streaming_llm.adapters import adapter_for


@torch.no_grad()
def last_row_attention(adapter, ids: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of the last query over all keys, per layer and head: (layers, Hq, T).

    Raises:
        ConfigError("model"): for ALiBi models (MPT), which this RoPE re-implementation does not cover.
    """
    if adapter.rope is None:
        raise ConfigError("model", "experiment=attention re-computes RoPE attention per layer; this model has "
                          "no rotary embedding (ALiBi, e.g. MPT): pick a RoPE model (Llama family, NeoX, Falcon)")
    h = adapter.embed(ids[None])  # (1, T, d)
    t = ids.numel()
    pos = torch.arange(t, device=ids.device)
    rows = []
    for i in range(adapter.n_layers):
        q, k, v = adapter.qkv(i, h)  # (1, Hq, T, D), (1, Hkv, T, D)
        q, k = adapter.rope.apply(q, pos), adapter.rope.apply(k, pos)
        g = adapter.n_heads // adapter.n_kv_heads
        kr = k.repeat_interleave(g, dim=1)  # (1, Hq, T, D)
        scores = (q[:, :, -1:].float() @ kr.float().transpose(-1, -2)) * adapter.scaling  # (1, Hq, 1, T)
        rows.append(scores.softmax(-1)[0, :, 0])  # (Hq, T)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=adapter.scaling,
                                             enable_gqa=adapter.n_heads != adapter.n_kv_heads)
        h = adapter.finish(i, h, out.transpose(1, 2).reshape(1, t, -1))
    return torch.stack(rows)


@torch.no_grad()
def average_maps(model, batches: list[torch.Tensor]) -> torch.Tensor:
    """Mean eager attention over sentences and heads, per layer: (layers, T, T)."""
    total = None
    n = 0
    for ids in batches:  # (B, T)
        att = model(ids, output_attentions=True).attentions  # tuple of (B, H, T, T)
        stacked = torch.stack([a.float().mean(dim=1).sum(dim=0) for a in att])  # (L, T, T)
        total = stacked if total is None else total + stacked
        n += ids.shape[0]
    return total / n


def short_sentences(text: str, tokenizer, length: int, count: int) -> torch.Tensor:
    """`count` sentences of at least `length` tokens, cut to `length`: (count, length)."""
    out = []
    for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        ids = tokenizer(s).input_ids
        if len(ids) >= length:
            out.append(ids[:length])
            if len(out) == count:
                break
    if not out:
        raise ValueError("no sentence is long enough")
    return torch.tensor(out)


@dataclass
class AttentionSettings:
    """Fig. 2 / Fig. 12 (`experiment.*`); defaults as the paper profile."""

    books: int = setting(3, pos_int(hi=1000), "books the short sentences are taken from")
    sentences: int = setting(256, pos_int(hi=100_000), "short sentences averaged into the maps")
    sentence_tokens: int = setting(16, pos_int(hi=4096), "tokens of each sentence (the maps are this wide)")
    late_position: int = setting(4096, pos_int(hi=1 << 20), "position in the first book of the late query")


@experiment(settings=AttentionSettings, figures=figures.draw_attention)
def attention(ctx: RunContext) -> None:
    """Fig. 2 maps over short sentences and the share of attention on token 0 from a late query, per layer."""
    from llm_efficiency_bench.core.data import load_documents
    from llm_efficiency_bench.core.models import load_model

    e, cfg = ctx.cfg.experiment, ctx.cfg
    lm = load_model(cfg.model, dtype="float32", device=cfg.device, attn="eager", data_dir=cfg.data_dir)
    docs = load_documents(cfg.data, cfg.data_dir, limit=int(e.books))
    text = "\n".join(d.text for d in docs)
    sents = short_sentences(text, lm.tokenizer, int(e.sentence_tokens), int(e.sentences))
    maps = average_maps(lm.model, list(sents.split(16)))  # (L, T, T)
    n_layers = maps.shape[0]
    # Share of attention on token 0 in short sentences (queries after the first 4 tokens).
    short_share = maps[:, 4:, 0].mean(dim=1)  # (L,)
    book = torch.tensor(lm.tokenizer(docs[0].text).input_ids)
    p = int(e.late_position)
    if book.numel() <= p:
        raise ConfigError("experiment.late_position", f"the first book has {book.numel()} tokens, not > {p}")
    rows_att = last_row_attention(adapter_for(lm.model), book[: p + 1])  # (L, H, p+1)
    late_share = rows_att[:, :, 0].mean(dim=1)  # (L,)
    per_head_majority = (rows_att[:, :, 0] > 0.5).float().mean(dim=1)  # fraction of heads with > 50% on token 0
    rows = []
    for k in range(n_layers):
        ctx.metric(f"sink_share.layer{k}", float(late_share[k]), "fraction", "none",
                   note=f"attention of the query at position {p} on token 0, mean over heads")
        rows.append({"layer": k, "share_token0_late": float(late_share[k]),
                     "heads_over_half_on_token0": float(per_head_majority[k]),
                     "share_token0_short_sentences": float(short_share[k]), "uniform_share": 1 / (p + 1)})
    upper = slice(2, None) if n_layers > 2 else slice(None)  # tiny models may have only 2 layers
    med = statistics.median(float(x) for x in late_share[upper])
    ctx.metric("sink_share.median_layers_ge2", med, "fraction", "none",
               note=f"median over layers >= 2; uniform attention would give {1 / (p + 1):.2e}")
    ctx.metric("sink_share.short_median_layers_ge2", statistics.median(float(x) for x in short_share[upper]),
               "fraction", "none", note=f"{sents.shape[0]} sentences of {sents.shape[1]} tokens")
    ctx.table("sink_share", f"Attention on token 0 per layer — {lm.name}, query at position {p} of "
              f"{docs[0].name}", rows, digits=3)
    # Fig. 2 maps of a few layers as long-form rows, so the report can redraw them; (T, T) per layer.
    show = sorted(k for k in {0, 1, 2, n_layers // 2, n_layers - 1} if k < n_layers)
    t = maps.shape[-1]
    ctx.csv("attention_maps", [{"layer": k, "query": q, "key": j, "weight": float(maps[k, q, j]),
                                "sentences": sents.shape[0]} for k in show for q in range(t) for j in range(t)])
