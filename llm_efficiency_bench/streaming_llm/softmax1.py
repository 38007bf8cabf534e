"""SoftMax-off-by-one, the paper's "zero sink" (Sec. 3.3): the attention function registered with
transformers as `softmax1`, and `NullKeyAdapter`, which runs such a model through the exact chunked
evaluator (one sink whose key and value are zero adds exactly exp(0) = 1 to every softmax denominator).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

SOFTMAX1 = "softmax1"  # name of the attention implementation registered with transformers


# --------------------------------------------------------------------------------------------------------
# SoftMax-off-by-one (the paper's "zero sink", Sec. 3.3)
# --------------------------------------------------------------------------------------------------------

def softmax1_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                       **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention with SoftMax1: w_j = exp(s_j) / (1 + sum_k exp(s_k)) (paper Sec. 3.3, "zero sink").

    Computed as an ordinary softmax over the keys plus one virtual key whose logit is 0 (a zero key) and
    whose value is 0, so the fast SDPA kernel does the work. Signature of a transformers attention function.

    Args:
        query: (B, Hq, Tq, D); key, value: (B, Hkv, Tk, D).
        attention_mask: bool (True = attend) or additive float mask broadcastable to (B, 1, Tq, Tk), or
            None for plain causal attention (the last Tq keys are the queries themselves).

    Returns:
        (B, Tq, Hq, D) attention output and None (no weights).
    """
    b, hkv, tk, d = key.shape
    tq = query.shape[2]
    key = torch.cat([key.new_zeros(b, hkv, 1, d), key], dim=2)  # (B, Hkv, 1+Tk, D): the null key first
    value = torch.cat([value.new_zeros(b, hkv, 1, value.shape[-1]), value], dim=2)
    if attention_mask is None:
        q_idx = torch.arange(tk - tq, tk, device=query.device)
        mask = torch.arange(tk, device=query.device)[None, :] <= q_idx[:, None]  # (Tq, Tk) causal
        attention_mask = mask[None, None]
    m = attention_mask[..., -tk:]  # (B|1, 1, Tq, Tk)
    if m.dtype == torch.bool:
        null_col = torch.ones(*m.shape[:-1], 1, dtype=torch.bool, device=m.device)
    else:
        null_col = torch.zeros(*m.shape[:-1], 1, dtype=m.dtype, device=m.device)
    mask = torch.cat([null_col, m], dim=-1)  # the null key is visible to every query
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout if module.training
                                         else 0.0, scale=scaling, enable_gqa=query.shape[1] != hkv)
    return out.transpose(1, 2).contiguous(), None


def register_softmax1() -> None:
    """Make `attn_implementation="softmax1"` available to transformers models (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SOFTMAX1, softmax1_attention)
    AttentionMaskInterface.register(SOFTMAX1, sdpa_mask)


register_softmax1()


class NullKeyAdapter:
    """Runs a SoftMax1 model through the exact chunked evaluator (or `last_row_attention`).

    After `arm()`, the first token of the next chunk gets key = value = 0 in every layer. Kept as a sink,
    it is the virtual null key of SoftMax1: logit q.0 = 0 (RoPE of a zero vector is zero), value 0, so
    every later softmax gets exactly +1 in its denominator. Everything else is the wrapped adapter.
    """

    def __init__(self, base: Any):
        self.base = base
        self._armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def arm(self) -> "NullKeyAdapter":
        self._armed = True
        return self

    def qkv(self, i: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self.base.qkv(i, h)  # q (B, Hq, C, D); k, v (B, Hkv, C, D)
        if self._armed:
            k, v = k.clone(), v.clone()
            k[:, :, 0] = 0
            v[:, :, 0] = 0
        return q, k, v

    def finish(self, i: int, h: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        out = self.base.finish(i, h, attn)
        if i == self.base.n_layers - 1:
            self._armed = False  # only the chunk right after arm() carries the null key
        return out
