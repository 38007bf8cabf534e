"""Fourier-VLM on transformers' `Qwen2VLForConditionalGeneration`: per-image compression after the patch merger.

Fourier-VLM (official integration for Qwen2-VL / Qwen2.5-VL; shared note "Method"): the vision tower runs on
the processor's patch grid (t, H, W); the patch merger turns every 2x2 patches into one token, giving a
t x (H/2) x (W/2) grid per image (or video). Each frame's (H/2) x (W/2) grid is compressed to
kh x kw = floor(ratio * H/2) x floor(ratio * W/2) by the DCT low-pass; the LLM then sees t*kh*kw tokens.
M-RoPE must see the compressed layout: the grid written back is (t, kh*m, kw*m) (m = spatial merge size),
so `get_rope_index` computes positions for a kh x kw grid.

Integration (in place, on a model instance):
* `get_image_features` / `get_video_features` wrapped (functools.wraps): the vision tower runs on the
  original grid_thw; each image's merged tokens are compressed.
* `get_rope_index` wrapped: it receives the original grid_thw (what the processor returns and generate passes
  along) and uses the compressed grid, so positions match the compressed placeholders.
* The prompt must hold t*kh*kw image placeholders per image (`compressed_token_count`, `prompt_ids`).
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.fourier_vlm.compress import TokenCompressor


def keep_sides(h: int, w: int, ratio: float) -> tuple[int, int]:
    """Kept block on a merged h x w grid: floor(ratio * side) per axis, at least 1."""
    if not 0 < ratio <= 1:
        raise ConfigError("fourier.ratio", f"ratio {ratio} must be in (0, 1]")
    return max(1, math.floor(ratio * h)), max(1, math.floor(ratio * w))


def compressed_grid_thw(grid_thw: torch.Tensor, ratio: float, merge: int) -> torch.Tensor:
    """The grid_thw the LLM sees after compression: (t, kh*merge, kw*merge) per row. (N, 3) -> (N, 3)."""
    out = grid_thw.clone()
    for i, (t, h, w) in enumerate(grid_thw.tolist()):
        kh, kw = keep_sides(h // merge, w // merge, ratio)
        out[i] = torch.tensor([t, kh * merge, kw * merge])
    return out


def compressed_token_count(grid_thw: torch.Tensor, ratio: float, merge: int) -> list[int]:
    """Image placeholders per image after compression: t * kh * kw."""
    g = compressed_grid_thw(grid_thw, ratio, merge)
    return [int(t * (h // merge) * (w // merge)) for t, h, w in g.tolist()]


def _compress_split(feats: tuple[torch.Tensor, ...], grid_thw: torch.Tensor, ratio: float, merge: int,
                    method: str) -> tuple[torch.Tensor, ...]:
    out = []
    for f, (t, h, w) in zip(feats, grid_thw.tolist()):
        gh, gw = h // merge, w // merge
        kh, kw = keep_sides(gh, gw, ratio)
        x = f.view(t, gh * gw, f.shape[-1])  # (t, gh*gw, D): one frame per row
        y = TokenCompressor(method, kh=kh, kw=kw, setting="fourier")(x, (gh, gw))  # (t, kh*kw, D)
        out.append(y.reshape(t * kh * kw, f.shape[-1]))
    return tuple(out)


def apply_qwen2vl_compressor(model: Any, ratio: float | None, method: str = "dct") -> Any:
    """Install (ratio in (0, 1]) or remove (None) the per-image compressor on a Qwen2-VL model, in place."""
    inner = model.model  # Qwen2VLModel
    merge = int(model.config.vision_config.spatial_merge_size)
    names = ("get_image_features", "get_video_features", "get_rope_index")
    saved = getattr(inner, "_fourier_originals", None)
    if saved is None:
        saved = {n: getattr(inner, n) for n in names}
        inner._fourier_originals = saved
    for n in names:
        setattr(inner, n, saved[n])
    if ratio is None:
        return model
    keep_sides(2, 2, ratio)  # validates the ratio (ConfigError naming fourier.ratio)

    def wrap_features(orig: Any) -> Any:
        sig = inspect.signature(orig)

        @functools.wraps(orig)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            grid = bound.arguments.get("image_grid_thw", bound.arguments.get("video_grid_thw"))
            outputs = orig(*args, **kwargs)
            outputs.pooler_output = _compress_split(tuple(outputs.pooler_output), grid, ratio, merge, method)
            return outputs

        return wrapper

    rope_orig = saved["get_rope_index"]
    rope_sig = inspect.signature(rope_orig)

    @functools.wraps(rope_orig)
    def get_rope_index(*args: Any, **kwargs: Any) -> Any:
        bound = rope_sig.bind(*args, **kwargs)
        for key in ("image_grid_thw", "video_grid_thw"):
            if bound.arguments.get(key) is not None:
                bound.arguments[key] = compressed_grid_thw(bound.arguments[key], ratio, merge)
        return rope_orig(*bound.args, **bound.kwargs)

    inner.get_image_features = wrap_features(saved["get_image_features"])
    inner.get_video_features = wrap_features(saved["get_video_features"])
    inner.get_rope_index = get_rope_index
    return model


def random_qwen2vl(seed: int = 0, vocab: int = 300) -> Any:
    """A tiny random-weight Qwen2-VL (nothing downloaded); special ids at the top of the vocabulary."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    cfg = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=vocab, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
                         bos_token_id=1, eos_token_id=2, pad_token_id=0),
        image_token_id=vocab - 1, video_token_id=vocab - 2, vision_start_token_id=vocab - 3,
        vision_end_token_id=vocab - 4)
    torch.manual_seed(seed)
    return Qwen2VLForConditionalGeneration(cfg).eval()


def fake_pixels(grid_thw: torch.Tensor, model: Any, seed: int = 0) -> torch.Tensor:
    """Random flattened patches as the Qwen2-VL processor produces them: (sum t*H*W, C*tp*p*p)."""
    v = model.config.vision_config
    n = int(grid_thw.prod(-1).sum())
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v.in_channels * v.temporal_patch_size * v.patch_size ** 2, generator=g)


def prompt_ids(model: Any, image_tokens: list[int], text_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and mm_token_type_ids (1, L): per image <vision_start> placeholders <vision_end>, then text."""
    c = model.config
    ids: list[int] = []
    types: list[int] = []
    for n in image_tokens:
        ids += [c.vision_start_token_id] + [c.image_token_id] * n + [c.vision_end_token_id]
        types += [0] + [1] * n + [0]
    ids += list(text_ids)
    types += [0] * len(text_ids)
    return torch.tensor([ids]), torch.tensor([types], dtype=torch.int32)
