"""Exact chunked evaluation of attention-sink / window / dense caches.

Feeding a stream one token at a time through `SinkCache` is the reference (paper Sec. 3.2, reference
`eval_long_ppl.py`), but costs hours for millions of tokens. Because the token at stream index t attends
exactly to the sinks 0..S-1 and to the band max(S, t-R)..t, a chunk of C tokens can be evaluated in one
forward with a sink + band mask, given the pre-RoPE KV of the sinks and of the previous R tokens:

    band key j:  visible iff max(S, t-R) <= j <= t;  RoPE distance t - j (true distance)
    sink key i:  visible iff i <= t, i < S;           RoPE distance min(t, S+R) - i (fixed cache offset)

Each token's hidden states are then computed with the same attention pattern as in the token-by-token
run, so every layer's KV, and every next-token NLL, are the same (tests check <= 1e-4 in fp32).

The two RoPE frames are merged into one scaled-dot-product call by concatenating along the head dim:
q' = [rope(q, band pos) | rope(q, sink pos)], band key' = [rope(k) | 0], sink key' = [0 | rope(k_sink)],
so q'.k' is the band score for band keys and the sink score for sink keys, under one softmax.

ALiBi models (MPT: the adapter has `rope=None` and `alibi_slopes`) take a separate branch: the same
distances become a per-head additive bias over [sink keys | band keys] (`alibi.py`).

On CPU the masked band is computed in query blocks (`band_blocks`, default 128 queries): a block sees
R + 128 of the R + C keys, so the flash kernel, which computes masked entries too, skips the columns no
row of the block can see (the same mask entries, so the same result).

With `split=True` (CPU) the band is not masked at all: `split_attention.split_band_attention` splits it into
unmasked flash-kernel pieces (own keys causal, carried keys a reversed-causal triangle and rectangles)
merged with the sinks by log-sum-exp, so the masked half of the band is skipped. The masked
call (`sink_band_attention`) remains for the first chunk (it holds the sinks), chunks longer than the
window, other devices, and as the reference the tests compare with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from llm_efficiency_bench.streaming_llm.adapters import Adapter
from llm_efficiency_bench.streaming_llm.alibi import alibi_attention, chunk_bias
from llm_efficiency_bench.streaming_llm.split_attention import merge_lse, sink_scores, split_band_attention


# Query rows per band block on CPU (`band_blocks`): 64 and 128 measured best for one 4+1020 layer of SmolLM2
# (bf16, 512-token chunk, 2 cores: masked 12.6 ms, blocks of 64/128 10.3 ms, 256 12.1 ms).
QUERY_BLOCK = 128
# Rows per cross-entropy block in `token_nll`: SmolLM2, 512 tokens, 2 cores, LM head included: bf16 61 ms
# in blocks of 16 vs 115 ms for one cross-entropy over the fp32 copy of the whole chunk (fp32: 204 vs 224).
NLL_ROWS = 16


@dataclass
class CachePolicy:
    """S + R cache. `window=None` means unbounded (dense)."""

    n_sink: int
    window: int | None

    @property
    def capacity(self) -> int | None:
        return None if self.window is None else self.n_sink + self.window

    def label(self) -> str:
        return "dense" if self.window is None else f"{self.n_sink}+{self.window}"


@dataclass
class StreamState:
    """Pre-RoPE KV carried between chunks, per layer: sinks (first S tokens) and the last R tokens."""

    seen: int = 0
    sink_k: list[torch.Tensor] = field(default_factory=list)  # per layer (B, Hkv, s, D), s <= S
    sink_v: list[torch.Tensor] = field(default_factory=list)
    recent_k: list[torch.Tensor] = field(default_factory=list)  # per layer (B, Hkv, r, D), r <= R
    recent_v: list[torch.Tensor] = field(default_factory=list)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for ts in (self.sink_k, self.sink_v, self.recent_k, self.recent_v)
                   for t in ts)

    def to_dict(self) -> dict:
        return {"seen": self.seen, "sink_k": self.sink_k, "sink_v": self.sink_v,
                "recent_k": self.recent_k, "recent_v": self.recent_v}

    @classmethod
    def from_dict(cls, d: dict) -> "StreamState":
        return cls(d["seen"], d["sink_k"], d["sink_v"], d["recent_k"], d["recent_v"])


def _flash_cpu(q, k, v, mask_bool, scale, bias=None):
    """Band attention with the CPU flash kernel: returns out (B, Hq, C, D) and log-sum-exp (B, Hq, C) fp32.

    GQA without copying K/V: the G query heads of a KV head are stacked along the query axis
    (B, Hkv, G*C, D), with the (C, K) mask repeated G times.
    """
    b, hq, c, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    if bias is None and mask_bool is not None:  # mask_bool=None and no bias: every key visible
        bias = band_bias(mask_bool, g, q.dtype)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q.reshape(b, hkv, g * c, d), k, v, 0.0, False, attn_mask=bias, scale=scale)
    return out.reshape(b, hq, c, d), lse.reshape(b, hq, c)


def band_bias(mask_bool: torch.Tensor, g: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (G*C, K) for `_flash_cpu` (0 visible, -inf hidden), the (C, K) bool mask repeated per head."""
    bias = torch.zeros(mask_bool.shape, dtype=dtype, device=mask_bool.device).masked_fill_(~mask_bool, float("-inf"))
    return bias.repeat(g, 1)


@dataclass
class BandBlock:
    """One query block of the band: queries [q0, q1) see only keys [k0, k1) (the rest of the row is masked)."""

    q0: int
    q1: int
    k0: int
    k1: int
    bias: torch.Tensor | None  # (G*(q1-q0), k1-k0) additive mask, None if the block is fully visible


def band_blocks(mask_bool: torch.Tensor, g: int, dtype: torch.dtype, rows: int) -> list[BandBlock]:
    """Cut the (C, K) band mask into query blocks of `rows`, each over the key columns its rows can see.

    The band of query t is [t-R, t]: a block of `rows` queries sees R + rows keys, not the whole
    R + C, so the CPU flash kernel (which computes masked entries too) skips the columns no row of the
    block sees. Same mask entries, so the masked call's result up to summation order.
    Built once per chunk and shared by every layer.
    """
    c = mask_bool.shape[0]
    cols = torch.arange(mask_bool.shape[1], device=mask_bool.device)
    out = []
    for q0 in range(0, c, rows):
        m = mask_bool[q0:q0 + rows]
        seen = m.any(0)
        if not bool(seen.any()):  # only sink queries (t < S): no band key at all
            out.append(BandBlock(q0, q0 + m.shape[0], 0, 0, None))
            continue
        k0, k1 = int(cols[seen].min()), int(cols[seen].max()) + 1
        m = m[:, k0:k1]
        out.append(BandBlock(q0, q0 + m.shape[0], k0, k1, None if bool(m.all()) else band_bias(m, g, dtype)))
    return out


def _flash_blocks(q, k, v, blocks: list[BandBlock], scale):
    """`_flash_cpu` block by block (`band_blocks`): out (B, Hq, C, D), lse (B, Hq, C) fp32 (-inf: no key)."""
    b, hq, c, d = q.shape
    outs, lses = [], []
    for bl in blocks:
        if bl.k1 == bl.k0:
            outs.append(q.new_zeros(b, hq, bl.q1 - bl.q0, d))
            lses.append(torch.full((b, hq, bl.q1 - bl.q0), float("-inf"), device=q.device))
            continue
        o, lse = _flash_cpu(q[:, :, bl.q0:bl.q1], k[:, :, bl.k0:bl.k1], v[:, :, bl.k0:bl.k1], None, scale, bl.bias)
        outs.append(o)
        lses.append(lse)
    if len(outs) == 1:
        return outs[0], lses[0]
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)


def sink_band_attention(qb, kb, vb, band_mask, qs, ks, vs, sink_mask, scale, fused: bool | None = None,
                        bias: torch.Tensor | None = None, blocks: list[BandBlock] | None = None):
    """softmax over [sink keys | band keys] of one query set that is rotated differently for each block.

    Args:
        qb: (B, Hq, C, D) queries rotated in the band frame; kb, vb: (B, Hkv, K, D) band keys/values.
        band_mask: (C, K) bool. qs: queries rotated at the sink frame; ks, vs: (B, Hkv, S, D); sink_mask (C, S).
            Pass qs=None when there are no sinks.
        fused: use the CPU flash kernel + log-sum-exp merge (default on CPU), else one portable SDPA call.
        bias: `band_bias(band_mask, Hq // Hkv, dtype)`, precomputed so that layers sharing a mask share it
            (fused path only).
        blocks: `band_blocks(band_mask, ...)`: the band one query block at a time over the keys it can see
            (fused path only; takes precedence over `bias`).

    Returns:
        (B, Hq, C, D) attention output in qb's dtype.

    On CPU the band block goes through the flash kernel, which also returns its log-sum-exp; the few sink
    scores are then merged exactly: out = (e^lse_b * out_b + sum_s e^z_s v_s) / (e^lse_b + sum_s e^z_s).
    """
    if fused is None:
        fused = qb.device.type == "cpu"  # the flash-for-CPU op exists only on CPU
    if not fused:  # portable path: one SDPA call over [0|k_sink] and [k_band|0] (2D head dim)
        if qs is None:
            return F.scaled_dot_product_attention(qb, kb, vb, attn_mask=band_mask, scale=scale,
                                                  enable_gqa=qb.shape[1] != kb.shape[1])
        q_aug = torch.cat([qb, qs], dim=-1)
        k_aug = torch.cat([torch.cat([torch.zeros_like(ks), ks], -1), torch.cat([kb, torch.zeros_like(kb)], -1)], -2)
        pad = torch.zeros_like(vb[..., :1]).expand(*vb.shape[:-1], vb.shape[-1])
        v_aug = torch.cat([torch.cat([vs, torch.zeros_like(vs)], -1), torch.cat([vb, pad], -1)], -2)
        out = F.scaled_dot_product_attention(q_aug, k_aug, v_aug, attn_mask=torch.cat([sink_mask, band_mask], 1),
                                             scale=scale, enable_gqa=qb.shape[1] != kb.shape[1])
        return out[..., : vb.shape[-1]]
    if blocks is not None:
        out_b, lse_b = _flash_blocks(qb, kb, vb, blocks, scale)
    else:
        out_b, lse_b = _flash_cpu(qb, kb, vb, band_mask, scale, bias)
    if qs is None or ks.shape[-2] == 0:
        return out_b
    # Queries that are sinks themselves (t < S) have no band key: their band block must weigh nothing.
    has_band = band_mask.any(dim=-1)  # (C,)
    lse_b = lse_b.masked_fill(~has_band, float("-inf"))
    out_b = out_b.masked_fill(~has_band[:, None], 0.0)
    return merge_lse([(out_b, lse_b)], sink_scores(qs, ks, scale, sink_mask), vs, qb.dtype)


class ChunkedEvaluator:
    """Runs a stream through a model with an S+R cache, a chunk at a time, exactly.

    Args:
        adapter: per-layer access to the model (`adapters.adapter_for(model)`).
        policy: the cache policy.
        split: compute the band as unmasked pieces (`split_attention`, CPU flash kernel only) wherever the
            chunk allows it (no sink inside the chunk, chunk <= window); None: on CPU. False (default) always
            uses the masked band (`sink_band_attention`). Exact either way; the default is False because
            the masked band in query blocks is faster: split/masked 0.90-0.94x on an idle 2-core machine
            (torch 2.13, bf16, chunk 512, 4+1020; benchmarks/test_streaming_eval.py, `split_vs_masked`).
        query_block: on CPU, compute the masked band `query_block` queries at a time, each block only over
            the keys it can see (`band_blocks`): R + 128 keys per block instead of R + C per query. None:
            one masked call over the whole chunk (the reference the tests compare with).
    """

    def __init__(self, adapter: Adapter, policy: CachePolicy, split: bool | None = False,
                 query_block: int | None = QUERY_BLOCK):
        self.a = adapter
        self.policy = policy
        self.state = StreamState()
        self.split = split
        self.query_block = query_block

    @torch.no_grad()
    def forward_chunk(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed ids (B, C) at the current stream offset; return hidden states (B, C, d) before the LM head."""
        a, pol, st = self.a, self.policy, self.state
        S = pol.n_sink
        R = pol.window
        n, C = st.seen, ids.shape[1]
        dev = ids.device
        t = torch.arange(n, n + C, device=dev)  # stream index of each query
        n_sink_prev = min(S, n)
        have_state = len(st.recent_k) == a.n_layers  # False before the first chunk
        n_recent_prev = st.recent_k[0].shape[-2] if have_state else 0
        ctx_start = n - n_recent_prev  # stream index of the first band key
        j = torch.arange(ctx_start, n + C, device=dev)  # stream index of each band key
        split = ((dev.type == "cpu" if self.split is None else self.split) and n >= S and (R is None or C <= R)
                 and getattr(a, "alibi_slopes", None) is None)  # ALiBi has its own (masked, biased) branch
        if not split:  # band mask (C, Kc): causal, inside the window, not a sink (sinks have their own block)
            band = (j[None, :] <= t[:, None]) & (j[None, :] >= S)
            if R is not None:
                band &= j[None, :] >= (t[:, None] - R)
        band_qpos, band_kpos = t - ctx_start, j - ctx_start  # local frame: true distances
        use_sinks = S > 0
        if use_sinks:
            n_sink_new = max(0, min(S - n, C))
            sink_idx = torch.arange(0, n_sink_prev + n_sink_new, device=dev)
            sink_mask = sink_idx[None, :] <= t[:, None]  # (C, Ks)
            cap = S + (R if R is not None else 10**12)
            sink_qpos = torch.minimum(t, torch.full_like(t, cap))
        alibi = getattr(a, "alibi_slopes", None)
        if alibi is not None:  # ALiBi models (MPT): one distance bias for all layers (alibi.py)
            n_sink_add = max(0, min(S - n, C))
            alibi_bias = chunk_bias(alibi, t, j, band, n_sink_prev + n_sink_add,
                                    S + R if R is not None else n + C)
        h = a.embed(ids)
        rope = a.rope
        bias = blocks = None  # the masked band's additive mask / blocks, once per chunk (all layers share it)
        if alibi is None:
            # Every layer rotates at the same positions: cos/sin tables once per chunk, not once per layer.
            cs_qb, cs_kb = rope.cos_sin(band_qpos, h.dtype), rope.cos_sin(band_kpos, h.dtype)
            if use_sinks:
                cs_qs, cs_ks = rope.cos_sin(sink_qpos, h.dtype), rope.cos_sin(sink_idx, h.dtype)
            if not split and dev.type == "cpu":
                if self.query_block:
                    blocks = band_blocks(band, a.n_heads // a.n_kv_heads, h.dtype, self.query_block)
                else:
                    bias = band_bias(band, a.n_heads // a.n_kv_heads, h.dtype)
        offset = None if R is None else R - n_recent_prev
        for i in range(a.n_layers):
            q, k, v = a.qkv(i, h)  # q (B,Hq,C,D); k,v (B,Hkv,C,D), pre-RoPE
            if have_state:
                k_ctx = torch.cat([st.recent_k[i], k], dim=-2)  # (B, Hkv, r+C, D)
                v_ctx = torch.cat([st.recent_v[i], v], dim=-2)
            else:
                k_ctx, v_ctx = k, v
            if alibi is not None:  # ---- ALiBi branch: keys [sinks | band], unrotated, under the bias ----
                sk = torch.cat([st.sink_k[i], k[:, :, :n_sink_add]], -2) if n_sink_prev else k[:, :, :n_sink_add]
                sv = torch.cat([st.sink_v[i], v[:, :, :n_sink_add]], -2) if n_sink_prev else v[:, :, :n_sink_add]
                out = alibi_attention(q, torch.cat([sk, k_ctx], -2), torch.cat([sv, v_ctx], -2), alibi_bias,
                                      a.scaling)
                h = a.finish(i, h, out.transpose(1, 2).reshape(ids.shape[0], C, -1))
                self._update_state(i, k, v, n, C)
                continue
            # ---- RoPE path ----
            qb = rope.rotate(q, *cs_qb)
            kb = rope.rotate(k_ctx, *cs_kb)
            qs = ks = sv = None
            if use_sinks:
                if n_sink_prev:
                    sk = torch.cat([st.sink_k[i], k[:, :, :n_sink_new]], dim=-2)
                    sv = torch.cat([st.sink_v[i], v[:, :, :n_sink_new]], dim=-2)
                else:
                    sk, sv = k[:, :, :n_sink_new], v[:, :, :n_sink_new]
                qs = rope.rotate(q, *cs_qs)
                ks = rope.rotate(sk, *cs_ks)
            if split:
                out = split_band_attention(qb, kb, v_ctx, n_recent_prev, offset, a.scaling, qs, ks, sv)
            else:
                out = sink_band_attention(qb, kb, v_ctx, band, qs, ks, sv, sink_mask if use_sinks else None,
                                          a.scaling, bias=bias, blocks=blocks)
            h = a.finish(i, h, out.transpose(1, 2).reshape(ids.shape[0], C, -1))
            self._update_state(i, k, v, n, C, k_ctx if have_state else None, v_ctx if have_state else None)
        st.seen = n + C
        return h

    def _update_state(self, i: int, k: torch.Tensor, v: torch.Tensor, n: int, C: int,
                      k_ctx: torch.Tensor | None = None, v_ctx: torch.Tensor | None = None) -> None:
        """Append the chunk's pre-RoPE k, v (B, Hkv, C, D) to layer i's sinks and band, keep the last R.

        k_ctx, v_ctx: [carried | k] as forward_chunk already built it, reused when no sink is new.
        """
        st, S, R = self.state, self.policy.n_sink, self.policy.window
        n_sink_new = max(0, min(S - n, C))
        if len(st.sink_k) <= i:
            st.sink_k.append(k[:, :, :0].clone())
            st.sink_v.append(v[:, :, :0].clone())
            st.recent_k.append(k[:, :, :0].clone())
            st.recent_v.append(v[:, :, :0].clone())
        if n_sink_new:
            st.sink_k[i] = torch.cat([st.sink_k[i], k[:, :, :n_sink_new]], dim=-2)
            st.sink_v[i] = torch.cat([st.sink_v[i], v[:, :, :n_sink_new]], dim=-2)
        if k_ctx is not None and not n_sink_new:
            rk, rv = k_ctx, v_ctx
        else:
            rk = torch.cat([st.recent_k[i], k[:, :, n_sink_new:]], dim=-2)
            rv = torch.cat([st.recent_v[i], v[:, :, n_sink_new:]], dim=-2)
        if R is not None and rk.shape[-2] > R:
            rk, rv = rk[:, :, -R:].contiguous(), rv[:, :, -R:].contiguous()
        st.recent_k[i], st.recent_v[i] = rk, rv

    @torch.no_grad()
    def nll(self, ids: torch.Tensor, targets: torch.Tensor, score: torch.Tensor | None = None) -> torch.Tensor:
        """Feed a chunk and return the next-token NLL of each position, fp32, shape (C,).

        Args:
            ids: (C,) input tokens at the current offset.
            targets: (C,) the token each input predicts.
        """
        h = self.forward_chunk(ids[None])
        return token_nll(self.a, h[0], targets)


def token_nll(adapter: Adapter, h: torch.Tensor, targets: torch.Tensor, rows: int = NLL_ROWS) -> torch.Tensor:
    """Next-token NLL, fp32 (C,), of hidden states h (C, d) before the LM head.

    One LM-head GEMM over the chunk (in the model's dtype), then the cross-entropy `rows` at a time on an
    fp32 upcast of those rows only: the (C, V) fp32 copy of the logits (C x 49152 x 4 bytes for SmolLM2)
    that `F.cross_entropy(logits.float())` reads is never made, and each row block stays in cache.
    The same fp32 cross-entropy row by row, so equal to it to rounding (tests).
    """
    targets = targets.to(h.device)
    logits = adapter.logits(h)  # (C, V), model dtype
    out = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
    for r0 in range(0, h.shape[0], rows):
        out[r0:r0 + rows] = F.cross_entropy(logits[r0:r0 + rows].float(), targets[r0:r0 + rows], reduction="none")
    return out
