"""Rotary position embedding (RoPE) as transformers applies it ("rotate_half" layout, partial rotary).

The attention-sink method needs keys at positions *within the cache* (paper Sec. 3.2), so keys are
rotated by the suite rather than inside the model. Angles are computed in fp32 as transformers does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rope:
    """RoPE of one model.

    Attributes:
        inv_freq: (rotary_dim/2,) inverse frequencies (already adjusted by any static rope scaling).
        rotary_dim: leading dims of each head that rotate (== head_dim unless partial rotary, e.g. Pythia).
        attention_scaling: factor transformers multiplies cos/sin by (1.0 for default RoPE).
    """

    inv_freq: torch.Tensor
    rotary_dim: int
    attention_scaling: float = 1.0

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype, scaled: bool = True):
        """cos, sin of shape (*positions.shape, rotary_dim) for integer/float `positions`."""
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq.to(positions.device, torch.float32)
        emb = torch.cat([freqs, freqs], dim=-1)
        scale = self.attention_scaling if scaled else 1.0
        return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)

    def apply(self, x: torch.Tensor, positions: torch.Tensor, scaled: bool = True) -> torch.Tensor:
        """Rotate x (B, H, T, D) by `positions` of shape (T,) or (B, T)."""
        cos, sin = self.cos_sin(positions, x.dtype, scaled)
        return self.rotate(x, cos, sin)

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate x (B, H, T, D) by precomputed `cos_sin` tables of shape (T, R) or (B, T, R).

        Lets a caller that rotates many layers at the same positions compute the tables once.
        """
        if cos.dim() == 2:  # (T, R) -> broadcast over batch and heads
            cos, sin = cos[None, None], sin[None, None]
        else:  # (B, T, R)
            cos, sin = cos[:, None], sin[:, None]
        r = self.rotary_dim
        x_rot, x_pass = x[..., :r], x[..., r:]
        out = x_rot * cos + rotate_half(x_rot) * sin
        return torch.cat([out, x_pass], dim=-1) if x_pass.shape[-1] else out

    def shift(self, x: torch.Tensor, delta: int) -> torch.Tensor:
        """Rotate already-rotated keys by a further `delta` positions (pure rotation, no scaling)."""
        if delta == 0:
            return x
        return self.apply(x, torch.tensor([float(delta)], device=x.device), scaled=False)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rope_of(model) -> Rope | None:
    """The RoPE spec of a transformers model, or None for models without RoPE (e.g. MPT's ALiBi)."""
    cfg = model.config
    if getattr(cfg, "alibi", False):  # Falcon with alibi=True builds a rotary module it never uses
        return None
    rotary = None
    for path in ("model.rotary_emb", "gpt_neox.rotary_emb", "transformer.rotary_emb"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            rotary = obj
            break
    if rotary is None:
        return None
    rope_type = getattr(rotary, "rope_type", "default")
    if rope_type == "dynamic":
        raise NotImplementedError("dynamic NTK RoPE changes frequencies with length; the sink cache needs static RoPE")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    inv = rotary.inv_freq.detach().float().cpu()
    return Rope(inv, rotary_dim=2 * inv.numel() if 2 * inv.numel() <= head_dim else head_dim,
                attention_scaling=float(getattr(rotary, "attention_scaling", 1.0)))
