"""ALiBi attention for the chunked evaluator (MPT): a per-head distance bias instead of RoPE.

StreamingLLM Sec. 3.2: positions are assigned *within the cache*, not in the text. For ALiBi that means
the bias of a key is -slope_h * (its distance from the query inside the cache), exactly what the
token-by-token `SinkCache` path produces, where transformers builds MPT's bias from cache indices (key at
cache index c, query at index K-1: bias -slope_h * (K-1-c)). In stream indices, for the query at t with S
sinks and R recent tokens (the same distances the RoPE path uses, see `engine.py`):

    band key j (max(S, t-R) <= j <= t):  distance t - j             (true distance)
    sink key i (i < S, i <= t):          distance min(t, S+R) - i   (fixed cache offset)

Scores are computed in fp32 whatever the model dtype: a bias of up to slope * (S+R) (hundreds) loses
whole units in bf16, and transformers' MPT also adds its fp32 bias to the scores in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def chunk_bias(slopes: torch.Tensor, t: torch.Tensor, j: torch.Tensor, band: torch.Tensor, n_sinks: int,
               cap: int) -> torch.Tensor:
    """Additive attention bias over keys [sinks 0..n_sinks-1 | band keys j] for the queries t.

    Args:
        slopes: (H,) ALiBi slope per head.
        t: (C,) stream index of each query; j: (Kc,) stream index of each band key.
        band: (C, Kc) bool, which band keys each query sees (sinks excluded).
        n_sinks: sink keys held for this chunk (min(S, tokens seen by the chunk's end)).
        cap: S + R, the cache index of a query once the cache is full (the stream length when unbounded).

    Returns:
        (1, H, C, n_sinks + Kc) fp32: -slope * distance where visible, -inf elsewhere.
    """
    i = torch.arange(n_sinks, device=t.device)
    q_cache = torch.clamp(t, max=cap)  # the query's index in the cache: min(t, S+R)
    dist = torch.cat([q_cache[:, None] - i[None, :], t[:, None] - j[None, :]], dim=1)  # (C, Ks+Kc)
    visible = torch.cat([i[None, :] <= t[:, None], band], dim=1)
    # Same product as transformers' MPT (integer distance times the fp32 slope), negated exactly.
    bias = -(dist.float()[None] * slopes.to(t.device, torch.float32)[:, None, None])  # (H, C, K)
    return bias.masked_fill(~visible[None], float("-inf"))[None]


def alibi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                    scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v, in fp32, through the portable SDPA path.

    Args:
        q: (B, Hq, C, D); k, v: (B, Hkv, K, D) keys [sinks | band]; bias: (1, Hq, C, K) from `chunk_bias`.

    Returns:
        (B, Hq, C, D) in q's dtype.
    """
    out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias, scale=scale,
                                         enable_gqa=q.shape[1] != k.shape[1])
    return out.to(q.dtype)
