"""Sink + band attention of one chunk without a mask: the band split into shapes the CPU flash kernel skips.

A chunk holds C queries at stream t = n + a (a = 0..C-1). Its band keys are the r carried keys (stream
n-r..n-1, index c = 0..r-1 in the carried block) followed by the chunk's own keys (index b). With window R
(engine.py: key j is visible iff t - R <= j <= t), and n >= S so that no sink lies in the chunk:

    own key b:      visible iff b <= a                       (plain causal; needs C <= R)
    carried key c:  visible iff c >= a - off,  off = R - r   (off = inf for a dense cache)

so with q = clamp(C - off, 0, r):

    carried[q:]  is visible to every query: a full rectangle, no mask;
    carried[:q]  is visible to the queries a < off entirely, and to a >= off iff c >= a - off: an upper
                 triangle, which is plain causal once both its queries and its keys are reversed.

Each piece is one call of the CPU flash kernel, which returns the piece's log-sum-exp; the pieces and the
few sink scores are merged exactly, out = sum_i e^lse_i out_i / sum_i e^lse_i (as the sinks were merged
into the masked band before). The masked half of the band is never computed and no (C, K) float mask is
built or read (the masked call computes all C*(R+C) scores, this computes C*R).
"""

from __future__ import annotations

import torch

_FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _expand_heads(x: torch.Tensor, g: int, flip: bool = False) -> torch.Tensor:
    """(B, Hkv, K, D) -> (B, Hkv*g, K, D): each KV head repeated for its g query heads (GQA), in one copy.

    flip: also reverse the key axis (the same single copy).
    """
    b, h, k, d = x.shape
    x = x[:, :, None].expand(b, h, g, k, d)
    return (x.flip(-2) if flip else x).reshape(b, h * g, k, d)


def flash_piece(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked (or top-left causal) attention of q (B, Hq, L, D) over k, v (B, Hkv, K, D).

    Returns:
        out (B, Hq, L, D) in q's dtype and its log-sum-exp (B, Hq, L) in fp32.
    """
    b, hq, length, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    if causal and g > 1:  # stacking the G heads along the query axis would shift the diagonal per head
        k, v, hkv, g = _expand_heads(k, g), _expand_heads(v, g), hq, 1
    # GQA without copying K/V: the G query heads of a KV head are stacked along the query axis.
    out, lse = _FLASH(q.reshape(b, hkv, g * length, d), k, v, 0.0, causal, scale=scale)
    return out.reshape(b, hq, length, d), lse.reshape(b, hq, length)


def sink_scores(qs: torch.Tensor, ks: torch.Tensor, scale: float,
                sink_mask: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 scores of queries qs (B, Hq, C, D) on the S sink keys ks (B, Hkv, S, D): (B, Hq, C, S).

    `sink_mask` (C, S) bool hides sinks a query may not see (-inf); None means all are visible.
    """
    b, hq, c, d = qs.shape
    hkv = ks.shape[1]
    g = hq // hkv
    z = (qs.float().reshape(b, hkv, g * c, d) @ ks.float().transpose(-1, -2)) * scale  # (B, Hkv, G*C, S)
    if sink_mask is not None:
        z = z.masked_fill(~sink_mask.repeat(g, 1), float("-inf"))
    return z.reshape(b, hq, c, -1)


def merge_lse(pieces: list[tuple[torch.Tensor, torch.Tensor]], z: torch.Tensor | None, vs: torch.Tensor | None,
              dtype: torch.dtype) -> torch.Tensor:
    """Exact softmax over the union of disjoint key sets, from each set's output and log-sum-exp.

    Args:
        pieces: (out (B, Hq, C, D), lse (B, Hq, C) fp32) per key set; lse = -inf where a row sees none.
        z: optional fp32 sink scores (B, Hq, C, S) (masked ones -inf), with sink values vs (B, Hkv, S, D).
        dtype: dtype of the result.

    Returns:
        (B, Hq, C, D): sum_i e^lse_i out_i + sum_s e^z_s v_s, over sum_i e^lse_i + sum_s e^z_s.
    """
    m = pieces[0][1]
    for _, lse in pieces[1:]:
        m = torch.maximum(m, lse)
    if z is not None:
        m = torch.maximum(m, z.amax(dim=-1))  # (B, Hq, C): shift for stable exponentials
    num = den = None
    for out, lse in pieces:
        w = torch.exp(lse - m)  # weight of the whole key set
        # one fp32 pass per piece (out may be bf16: the product promotes, no separate .float() copy)
        num = w[..., None] * out if num is None else num.addcmul_(w[..., None], out)
        den = w if den is None else den + w
    if z is not None:
        w_s = torch.exp(z - m[..., None])  # (B, Hq, C, S)
        g = z.shape[1] // vs.shape[1]
        num = num + w_s @ vs.float().repeat_interleave(g, dim=1)  # (B, Hq, S, D): S is tiny
        den = den + w_s.sum(-1)
    return num.div_(den[..., None]).to(dtype)


def split_band_attention(qb: torch.Tensor, kb: torch.Tensor, vb: torch.Tensor, n_carried: int,
                         offset: int | None, scale: float, qs: torch.Tensor | None = None,
                         ks: torch.Tensor | None = None, vs: torch.Tensor | None = None) -> torch.Tensor:
    """Sink + band attention of a chunk, without masks (see the module docstring).

    Args:
        qb: (B, Hq, C, D) queries rotated in the band frame.
        kb, vb: (B, Hkv, r + C, D) band keys (rotated) and values: the r carried ones, then the chunk's own.
        n_carried: r. offset: R - r (>= 0), or None for a dense cache (every carried key visible).
        qs, ks, vs: queries rotated in the sink frame and the sinks' keys/values (B, Hkv, S, D), all
            visible to every query (n >= S); qs=None when there are none.

    Preconditions (the caller falls back to the masked path otherwise): no sink inside the chunk, and
    C <= R, so that own keys are plain causal and every query sees at least its own key.

    Returns:
        (B, Hq, C, D) in qb's dtype.
    """
    c, r = qb.shape[-2], n_carried
    pieces = [flash_piece(qb, kb[:, :, r:], vb[:, :, r:], scale, causal=True)]  # own keys
    q = 0 if offset is None else max(0, min(c - offset, r))
    if q < r:  # carried[q:]: visible to all queries
        pieces.append(flash_piece(qb, kb[:, :, q:r], vb[:, :, q:r], scale))
    if q:  # carried[:q]: queries a >= off see c >= a - off (triangle), queries a < off see all
        off = c - q
        ke, ve = kb[:, :, :q], vb[:, :, :q]
        g = qb.shape[1] // kb.shape[1]  # reverse and expand the GQA heads in one copy
        out, lse = flash_piece(qb[:, :, off:].flip(-2), _expand_heads(ke, g, flip=True),
                               _expand_heads(ve, g, flip=True), scale, causal=True)
        out, lse = out.flip(-2), lse.flip(-1)
        if off:
            out_e, lse_e = flash_piece(qb[:, :, :off], ke, ve, scale)
            out, lse = torch.cat([out_e, out], dim=-2), torch.cat([lse_e, lse], dim=-1)
        pieces.append((out, lse))
    z = sink_scores(qs, ks, scale) if qs is not None and ks.shape[-2] else None
    return merge_lse(pieces, z, vs, qb.dtype)
