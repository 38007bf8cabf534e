"""Per-layer access to transformers models for the chunked evaluator.

The evaluator needs each layer's query/key/value *before* RoPE, so that it can place keys at
cache-relative positions itself. An adapter splits a decoder layer into `qkv` (norm + projections) and
`finish` (output projection, residuals, MLP), reusing the model's own modules and weights.

Supported: Llama family (Llama-2/3, Mistral, SmolLM2, Qwen2: `model.layers[i].self_attn`) and GPT-NeoX
(Pythia: fused QKV, partial rotary, parallel residual). Falcon and MPT run through the token-by-token
`SinkCache` path (see README, "Falcon and MPT").
"""

from __future__ import annotations

from typing import Protocol

import torch

from bench.streaming_llm.rope import Rope, rope_of


class Adapter(Protocol):
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    scaling: float
    rope: Rope

    def embed(self, ids: torch.Tensor) -> torch.Tensor: ...
    def qkv(self, i: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def finish(self, i: int, h: torch.Tensor, attn: torch.Tensor) -> torch.Tensor: ...
    def logits(self, h: torch.Tensor) -> torch.Tensor: ...


class LlamaAdapter:
    """Llama-family decoder: h -> h + o(attn(norm1 h)) -> + mlp(norm2 .)."""

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.layers = model.model.layers
        self.n_layers = len(self.layers)
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.scaling = self.layers[0].self_attn.scaling
        rope = rope_of(model)
        assert rope is not None, "Llama-family model without rotary embedding"
        self.rope = rope

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

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.layers = model.gpt_neox.layers
        self.n_layers = len(self.layers)
        self.n_heads = self.n_kv_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.scaling = self.layers[0].attention.scaling
        self.parallel = bool(cfg.use_parallel_residual)
        rope = rope_of(model)
        assert rope is not None
        self.rope = rope

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


def adapter_for(model) -> Adapter:
    """The adapter for a loaded model, or a clear error for architectures only the token path supports."""
    kind = model.config.model_type
    if hasattr(model, "model") and hasattr(model.model, "layers") and hasattr(model.model.layers[0], "self_attn") \
            and hasattr(model.model.layers[0].self_attn, "q_proj"):
        return LlamaAdapter(model)
    if kind == "gpt_neox":
        return NeoXAdapter(model)
    raise NotImplementedError(
        f"the chunked evaluator has no adapter for model_type {kind!r}; run it token by token with "
        "evaluator=token (the SinkCache path works for any RoPE model, and for ALiBi models such as MPT)"
    )
