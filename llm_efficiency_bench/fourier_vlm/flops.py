"""Analytic FLOP counts for transformer pipelines (vision encoder + projector + LLM), read from configs.

Counts are in FLOPs = 2 x multiply-accumulates (the `torch.utils.flop_counter` unit); element-wise ops,
norms, softmax and biases are not counted (they are not matmuls and FlopCounterMode does not count them).

Two kinds of count:

* `convention_flops` — the counts papers use, parameterised by a `Convention`: which parts are counted
  (LLM only, or LLM + vision encoder + projector), the FFN as 2 matrices (FastV, arXiv 2403.06764 Sec. 4:
  per layer 4nd^2 + 2n^2d + 2ndm MACs) or 3 (gated FFN, as PDrop counts it), prefill only or prefill plus the
  decoding of G new tokens, image tokens only or image + text tokens. No LM head, no embeddings.
* `exact_flops` — every matmul the transformers implementation runs in one forward (patch embedding, all
  vision layers, projector, the LLM with its real q/kv widths and FFN, the LM head), used to cross-check
  against `FlopCounterMode`.

Any config with the fields of `LlavaConfig` works (`arch_from_llava_config`); no weights are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_efficiency_bench.core.errors import ConfigError

SCOPES = ("llm", "llm_vit_proj")
PHASES = ("prefill", "prefill_decode")
GATED_FFN_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2")


@dataclass(frozen=True)
class TransformerArch:
    """Widths of a stack of transformer layers.

    Args:
        layers: number of layers run.
        hidden: d, the residual width.
        intermediate: m, the FFN width.
        heads: attention heads; head_dim * heads is the query width.
        kv_heads: key/value heads (grouped-query attention when < heads).
        head_dim: per-head width.
        ffn_mats: matrices in the FFN as implemented (2 for GELU MLPs, 3 for gated SiLU MLPs).
    """

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn_mats: int


@dataclass(frozen=True)
class VlmArch:
    """A LLaVA-style pipeline: vision transformer -> projector MLP -> LLM."""

    vision: TransformerArch
    llm: TransformerArch
    image_size: int
    patch_size: int
    channels: int
    vision_tokens: int  # tokens through the vision encoder (patches + CLS)
    image_tokens: int  # features handed to the projector before any compression (patches, CLS dropped)
    projector: tuple[int, ...]  # widths: in -> hidden -> out
    vocab: int
    name: str = ""


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def arch_from_llava_config(cfg: Any, name: str = "") -> VlmArch:
    """Read a `transformers.LlavaConfig` (or a dict of the same fields) into a `VlmArch`.

    The vision tower runs all its layers (the features of layer -2 are taken after the last layer ran, as
    in LLaVA and in transformers); the CLS token goes through the encoder and is dropped before the
    projector when `vision_feature_select_strategy == "default"`.
    """
    v, t = _get(cfg, "vision_config"), _get(cfg, "text_config")
    if v is None or t is None:
        raise ConfigError("model.arch", "a LLaVA config needs vision_config and text_config")
    vh, th = int(_get(v, "hidden_size")), int(_get(t, "hidden_size"))
    vheads, theads = int(_get(v, "num_attention_heads")), int(_get(t, "num_attention_heads"))
    vision = TransformerArch(int(_get(v, "num_hidden_layers")), vh, int(_get(v, "intermediate_size")), vheads,
                             vheads, vh // vheads, 2)
    ttype = _get(t, "model_type", "llama")
    thd = _get(t, "head_dim") or th // theads
    llm = TransformerArch(int(_get(t, "num_hidden_layers")), th, int(_get(t, "intermediate_size")), theads,
                          int(_get(t, "num_key_value_heads") or theads), int(thd),
                          3 if ttype in GATED_FFN_TYPES else 2)
    image_size, patch = int(_get(v, "image_size")), int(_get(v, "patch_size"))
    n_patch = (image_size // patch) ** 2
    layer_sel = _get(cfg, "vision_feature_layer", -2)
    n_sel = len(layer_sel) if isinstance(layer_sel, (list, tuple)) else 1
    strategy = _get(cfg, "vision_feature_select_strategy", "default")
    ph = int(_get(cfg, "projector_hidden_size", 0) or th)  # LLaVA-1.5's mlp2x_gelu: in -> d_llm -> d_llm
    return VlmArch(vision, llm, image_size, patch, int(_get(v, "num_channels", 3) or 3), n_patch + 1,
                   n_patch if strategy == "default" else n_patch + 1, (vh * n_sel, ph, th),
                   int(_get(t, "vocab_size")), name)


# ------------------------------------------------------------------------------------------- layer counts
def layer_flops(arch: TransformerArch, n: int, ctx: int | None = None, ffn_mats: int | None = None,
                fastv: bool = False) -> dict[str, float]:
    """FLOPs of one transformer layer for `n` query tokens attending over `ctx` keys (ctx = n in prefill).

    FastV (fastv=True): 2 x (4nd^2 + 2n*ctx*d + ffn_mats*n*d*m), i.e. square q/k/v/o projections of width d.
    Otherwise the real widths: q and o of heads*head_dim, k and v of kv_heads*head_dim.

    Returns:
        {"proj": ..., "attn": ..., "ffn": ...} in FLOPs.
    """
    ctx = n if ctx is None else ctx
    d, m = arch.hidden, arch.intermediate
    f = arch.ffn_mats if ffn_mats is None else ffn_mats
    if fastv:
        q = kv = d
    else:
        q, kv = arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim
    proj = 2 * n * d * (2 * q + 2 * kv)  # Wq, Wo (d x q) and Wk, Wv (d x kv)
    attn = 2 * 2 * n * ctx * q  # Q K^T and A V (full score matrix, as FastV and eager attention count it)
    ffn = 2 * f * n * d * m
    return {"proj": float(proj), "attn": float(attn), "ffn": float(ffn)}


def _stack(arch: TransformerArch, n: int, ctx: int | None = None, ffn_mats: int | None = None,
           fastv: bool = False) -> float:
    return arch.layers * sum(layer_flops(arch, n, ctx, ffn_mats, fastv).values())


def decode_flops(arch: TransformerArch, prompt: int, new_tokens: int, ffn_mats: int | None = None,
                 fastv: bool = False) -> float:
    """LLM FLOPs of decoding `new_tokens` tokens one at a time with a KV cache after a `prompt`-token prefill.

    Step j (1-based) feeds 1 token that attends over prompt + j keys. The first new token comes out of the
    prefill itself, so G new tokens cost G - 1 decode steps.
    """
    return float(sum(_stack(arch, 1, prompt + j, ffn_mats, fastv) for j in range(1, new_tokens)))


def projector_flops(arch: VlmArch, n: int) -> float:
    """The MLP projector on `n` (already compressed) tokens."""
    w = arch.projector
    return float(sum(2 * n * a * b for a, b in zip(w[:-1], w[1:])))


def vision_flops(arch: VlmArch, fastv: bool = True, patch_embed: bool = False) -> float:
    """The vision encoder over its `vision_tokens` (CLS included), optionally with the patch embedding."""
    f = _stack(arch.vision, arch.vision_tokens, fastv=fastv)
    if patch_embed:
        f += 2 * (arch.vision_tokens - 1) * arch.channels * arch.patch_size ** 2 * arch.vision.hidden
    return float(f)


# ------------------------------------------------------------------------------------------ conventions
@dataclass(frozen=True)
class Convention:
    """How a paper counts inference FLOPs.

    Args:
        scope: "llm" (the LLM only) or "llm_vit_proj" (+ vision encoder and projector).
        ffn_mats: FFN as 2 matrices (FastV) or 3 (gated FFN).
        phase: "prefill" or "prefill_decode" (+ decoding of G new tokens).
        text_tokens: text tokens in the prompt besides the image tokens (0 = image tokens only).
    """

    scope: str = "llm_vit_proj"
    ffn_mats: int = 2
    phase: str = "prefill"
    text_tokens: int = 0

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError("experiment.conventions", f"unknown FLOPs scope {self.scope!r}; choose one of {SCOPES}")
        if self.phase not in PHASES:
            raise ConfigError("experiment.conventions", f"unknown FLOPs phase {self.phase!r}; choose one of {PHASES}")
        if self.ffn_mats not in (2, 3):
            raise ConfigError("experiment.conventions", f"FFN matrices must be 2 or 3, not {self.ffn_mats}")
        if self.text_tokens < 0:
            raise ConfigError("experiment.conventions", f"text_tokens must be >= 0, not {self.text_tokens}")

    @property
    def name(self) -> str:
        s = f"{self.scope}_ffn{self.ffn_mats}_{self.phase}"
        return s + (f"_txt{self.text_tokens}" if self.text_tokens else "")

    @classmethod
    def parse(cls, name: str) -> "Convention":
        """Inverse of `name`, e.g. "llm_vit_proj_ffn2_prefill" or "llm_ffn3_prefill_decode_txt64".

        Raises:
            ConfigError: naming `experiment.conventions` when the name is not of that form.
        """
        rest, text = name, 0
        if "_txt" in rest:
            rest, _, t = rest.rpartition("_txt")
            if not t.isdigit():
                raise ConfigError("experiment.conventions", f"unknown FLOPs convention {name!r}")
            text = int(t)
        for scope in sorted(SCOPES, key=len, reverse=True):
            for f in (2, 3):
                for phase in sorted(PHASES, key=len, reverse=True):
                    if rest == f"{scope}_ffn{f}_{phase}":
                        return cls(scope, f, phase, text)
        raise ConfigError("experiment.conventions",
                          f"unknown FLOPs convention {name!r}; expected <{'|'.join(SCOPES)}>_ffn<2|3>_"
                          f"<{'|'.join(PHASES)}>[_txt<N>]")


def all_conventions(text_tokens: tuple[int, ...] = (0,)) -> list[Convention]:
    return [Convention(s, f, p, t) for t in text_tokens for s in SCOPES for f in (2, 3) for p in PHASES]


def convention_flops(arch: VlmArch, image_tokens: int, conv: Convention, new_tokens: int = 0) -> dict[str, float]:
    """Inference FLOPs of one image + prompt under a paper convention (FastV-style per-layer count).

    Args:
        arch: the pipeline.
        image_tokens: tokens the LLM sees for the image (after compression).
        conv: the convention.
        new_tokens: G, generated tokens (used when conv.phase == "prefill_decode").

    Returns:
        Parts {"vision", "projector", "llm_prefill", "llm_decode", "total"} in FLOPs.
    """
    n = image_tokens + conv.text_tokens
    out = {"vision": 0.0, "projector": 0.0, "llm_prefill": _stack(arch.llm, n, ffn_mats=conv.ffn_mats, fastv=True),
           "llm_decode": 0.0}
    if conv.scope == "llm_vit_proj":
        out["vision"] = vision_flops(arch, fastv=True)
        out["projector"] = projector_flops(arch, image_tokens)
    if conv.phase == "prefill_decode":
        out["llm_decode"] = decode_flops(arch.llm, n, new_tokens, conv.ffn_mats, fastv=True)
    out["total"] = sum(out.values())
    return out


def reduction(base: float, reduced: float) -> float:
    """1 - reduced / base (e.g. 0.8 = 80% fewer FLOPs)."""
    return 1.0 - reduced / base


@dataclass
class ExactCount:
    """All matmul FLOPs of one transformers forward, by part."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))


def exact_flops(arch: VlmArch, image_tokens: int, text_tokens: int, lm_head_tokens: int | None = None,
                with_vision: bool = True) -> ExactCount:
    """Every matmul of one LLaVA forward in transformers (what FlopCounterMode should see).

    Args:
        arch: the pipeline.
        image_tokens: image tokens after compression (projector input and LLM positions).
        text_tokens: other prompt tokens.
        lm_head_tokens: positions the LM head runs on (None = all prompt positions).
        with_vision: include the patch embedding and the vision layers.
    """
    n = image_tokens + text_tokens
    parts = {}
    if with_vision:
        parts["patch_embed"] = 2.0 * (arch.vision_tokens - 1) * arch.channels * arch.patch_size ** 2 * arch.vision.hidden
        parts["vision"] = _stack(arch.vision, arch.vision_tokens)
    parts["projector"] = projector_flops(arch, image_tokens)
    parts["llm"] = _stack(arch.llm, n)
    parts["lm_head"] = 2.0 * (n if lm_head_tokens is None else lm_head_tokens) * arch.llm.hidden * arch.vocab
    return ExactCount(parts)
