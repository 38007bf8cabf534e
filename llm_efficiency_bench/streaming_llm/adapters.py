"""Per-layer access to transformers models for the chunked evaluator.

The evaluator needs each layer's query/key/value *before* any position is applied, so that it can place
keys at cache-relative positions itself (paper Sec. 3.2). An adapter splits a decoder layer into `qkv`
(norm + projections) and `finish` (output projection, residuals, MLP), reusing the model's own modules and
weights, so the arithmetic is transformers' own.

Supported (`model_type`):
- `llama`, `mistral`, `qwen2`: Llama family (Llama-2/3, Mistral, SmolLM2; Qwen2 has biases on q/k/v,
  which live inside the projections).
- `gpt_neox` (Pythia): fused QKV laid out per head as [q | k | v], partial rotary, parallel residual.
- `falcon`: fused QKV in three layouts (multi-head, multi-query, "new decoder architecture" with grouped
  KV heads), RoPE, parallel attention/MLP.
- `mpt`: ALiBi instead of RoPE: `rope` is None and `alibi_slopes` gives the per-head slope; the engine then
  adds the distance bias itself (`llm_efficiency_bench.streaming_llm.alibi`).
Anything else is refused with an error naming the `model` setting.
"""

from __future__ import annotations

from typing import Protocol

import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.streaming_llm.rope import Rope, rope_of


class Adapter(Protocol):
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    scaling: float
    rope: Rope | None  # None for ALiBi models, which set alibi_slopes instead
    alibi_slopes: torch.Tensor | None  # (n_heads,) fp32, or None for RoPE models

    def embed(self, ids: torch.Tensor) -> torch.Tensor: ...
    def qkv(self, i: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def finish(self, i: int, h: torch.Tensor, attn: torch.Tensor) -> torch.Tensor: ...
    def logits(self, h: torch.Tensor) -> torch.Tensor: ...


def _rope(model) -> Rope:
    rope = rope_of(model)
    if rope is None:
        raise ConfigError("model", f"{model.config.model_type} model without a rotary embedding")
    return rope


class LlamaAdapter:
    """Llama-family decoder: h -> h + o(attn(norm1 h)) -> + mlp(norm2 .)."""

    alibi_slopes = None

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.layers = model.model.layers
        self.n_layers = len(self.layers)
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.scaling = self.layers[0].self_attn.scaling
        self.rope = _rope(model)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.model.embed_tokens(ids)

    def qkv(self, i, h):
        layer = self.layers[i]
        x = layer.input_layernorm(h)
        b, t, _ = x.shape
        att = layer.self_attn
        q = att.q_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, Hq, T, D)
        k = att.k_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = att.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        return q, k, v

    def finish(self, i, h, attn):
        layer = self.layers[i]
        h = h + layer.self_attn.o_proj(attn)
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def logits(self, h):
        return self.model.lm_head(self.model.model.norm(h))


class NeoXAdapter:
    """GPT-NeoX (Pythia): fused QKV laid out per head as [q | k | v], partial rotary, parallel residual."""

    alibi_slopes = None

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.layers = model.gpt_neox.layers
        self.n_layers = len(self.layers)
        self.n_heads = self.n_kv_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.scaling = self.layers[0].attention.scaling
        self.parallel = bool(cfg.use_parallel_residual)
        self.rope = _rope(model)

    def embed(self, ids):
        return self.model.gpt_neox.embed_in(ids)

    def qkv(self, i, h):
        layer = self.layers[i]
        x = layer.input_layernorm(h)
        b, t, _ = x.shape
        qkv = layer.attention.query_key_value(x).view(b, t, -1, 3 * self.head_dim).transpose(1, 2)
        q, k, v = qkv.chunk(3, dim=-1)  # each (B, H, T, D)
        return q.contiguous(), k.contiguous(), v.contiguous()

    def finish(self, i, h, attn):
        layer = self.layers[i]
        a = layer.attention.dense(attn)
        if self.parallel:
            return h + a + layer.mlp(layer.post_attention_layernorm(h))
        h = h + a
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def logits(self, h):
        head = getattr(self.model, "embed_out", None) or self.model.lm_head
        return head(self.model.gpt_neox.final_layer_norm(h))


class FalconAdapter:
    """Falcon (`FalconDecoderLayer`), RoPE variants.

    Fused QKV layouts (transformers `FalconAttention._split_heads`):
    - new decoder architecture (Falcon-40B/180B): per KV group [q_1 .. q_G | k | v], G = Hq / Hkv;
    - multi-query (Falcon-7B): [q_1 .. q_H | k | v] with one KV head;
    - neither: per head [q | k | v].
    The KV heads are returned once (not broadcast to Hq as transformers does); the engine's GQA handling
    maps query head h to KV head h // G, the same grouping.
    Residual: parallel attention/MLP (`parallel_attn` or the new architecture, with one or two input norms),
    else sequential like Llama.
    """

    alibi_slopes = None

    def __init__(self, model):
        cfg = model.config
        if getattr(cfg, "alibi", False):
            raise ConfigError("model", "Falcon with alibi=True (e.g. falcon-rw) has no chunked-evaluator adapter; "
                                       "only the RoPE Falcon models (falcon-7b/40b/180b) have one")
        self.model = model
        self.layers = model.transformer.h
        self.n_layers = len(self.layers)
        self.n_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.new_arch = bool(cfg.new_decoder_architecture)
        self.multi_query = bool(cfg.multi_query)
        if self.new_arch:
            self.n_kv_heads = cfg.num_kv_heads
        else:
            self.n_kv_heads = 1 if self.multi_query else self.n_heads
        self.parallel = bool(cfg.parallel_attn)
        self.two_norms = hasattr(self.layers[0], "ln_attn")  # new architecture with num_ln_in_parallel_attn == 2
        self.scaling = self.layers[0].self_attention.inv_norm_factor
        self.rope = _rope(model)

    def embed(self, ids):
        return self.model.transformer.word_embeddings(ids)

    def qkv(self, i, h):
        layer = self.layers[i]
        x = layer.ln_attn(h) if self.two_norms else layer.input_layernorm(h)
        fused = layer.self_attention.query_key_value(x)
        b, t, _ = fused.shape
        d, hq, hkv = self.head_dim, self.n_heads, self.n_kv_heads
        if self.new_arch:
            g = fused.view(b, t, hkv, hq // hkv + 2, d)
            q, k, v = g[:, :, :, :-2].reshape(b, t, hq, d), g[:, :, :, -2], g[:, :, :, -1]
        elif self.multi_query:
            g = fused.view(b, t, hq + 2, d)
            q, k, v = g[:, :, :-2], g[:, :, -2:-1], g[:, :, -1:]
        else:
            g = fused.view(b, t, hq, 3, d)
            q, k, v = g[..., 0, :], g[..., 1, :], g[..., 2, :]
        # (B, Hq, T, D), (B, Hkv, T, D), (B, Hkv, T, D)
        return q.transpose(1, 2), k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()

    def finish(self, i, h, attn):
        layer = self.layers[i]
        a = layer.self_attention.dense(attn)
        # Same operation order as FalconDecoderLayer.forward: residual + (mlp + attn).
        if self.new_arch or self.parallel:
            x = layer.ln_mlp(h) if self.two_norms else layer.input_layernorm(h)
            return h + (layer.mlp(x) + a)
        h = h + a
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def logits(self, h):
        return self.model.lm_head(self.model.transformer.ln_f(h))


class MptAdapter:
    """MPT (`MptBlock`): fused Wqkv as [q | k | v] over the hidden size, optional clip_qkv, ALiBi.

    ALiBi (Press et al. 2022) adds -slope_h * distance to each score instead of rotating q and k. The slopes
    are read from the model's own `build_mpt_alibi_tensor`, the function transformers uses (it ignores the
    config's alibi_bias_max, so reading the config would not match).
    """

    rope = None

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.layers = model.transformer.blocks
        self.n_layers = len(self.layers)
        self.n_heads = self.n_kv_heads = cfg.n_heads
        self.head_dim = cfg.hidden_size // cfg.n_heads
        self.scaling = float(self.layers[0].attn.softmax_scale)
        self.clip = self.layers[0].attn.clip_qkv
        bias = model.transformer.build_mpt_alibi_tensor(self.n_heads, 2, device="cpu")  # (H, 1, 2): [-slope, 0]
        self.alibi_slopes = (-bias[:, 0, 0]).float()  # (H,)

    def embed(self, ids):
        return self.model.transformer.wte(ids)

    def qkv(self, i, h):
        att = self.layers[i].attn
        x = self.layers[i].norm_1(h)
        mixed = att.Wqkv(x)
        if self.clip:
            mixed = mixed.clamp(min=-self.clip, max=self.clip)
        b, t, _ = mixed.shape
        q, k, v = (z.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2) for z in mixed.chunk(3, dim=2))
        return q, k.contiguous(), v.contiguous()  # each (B, H, T, D)

    def finish(self, i, h, attn):
        layer = self.layers[i]
        h = layer.attn.out_proj(attn) + h  # MptBlock: resid_attn_dropout(attn) + residual
        return layer.ffn(layer.norm_2(h), h)  # MptMLP adds the residual itself

    def logits(self, h):
        return self.model.lm_head(self.model.transformer.norm_f(h))


ADAPTERS = {"llama": LlamaAdapter, "mistral": LlamaAdapter, "qwen2": LlamaAdapter,
            "gpt_neox": NeoXAdapter, "falcon": FalconAdapter, "mpt": MptAdapter}


def adapter_for(model) -> Adapter:
    """The adapter for a loaded model.

    Raises:
        ConfigError (`model`): the architecture has no adapter. Matching by `model_type` rather than by
            module names keeps look-alikes out (Qwen3 and Gemma have q_proj too, but also q/k norms or
            other changes the Llama adapter would silently skip).
    """
    kind = model.config.model_type
    if kind not in ADAPTERS:
        raise ConfigError("model", f"the chunked evaluator has no adapter for model_type {kind!r} "
                                   f"(supported: {', '.join(sorted(ADAPTERS))})")
    return ADAPTERS[kind](model)
