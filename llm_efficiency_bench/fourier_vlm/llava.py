"""Fourier-VLM on transformers' `LlavaForConditionalGeneration`: compressor between vision tower and projector.

Fourier-VLM Sec. 3: LLaVA-1.5 takes CLIP ViT-L/14-336 features of layer -2 with the CLS token dropped
([B, 576, 1024]), compresses them to k x k tokens, then runs the 2-layer MLP projector and the LLM. Here the
model's `get_image_features` is wrapped (functools.wraps keeps the signature that `generate` inspects); while
it runs, a forward pre-hook on `multi_modal_projector` compresses the projector's input, so the projector
and the LLM both see k*k tokens. The prompt must then hold k*k image placeholders (`prompt_ids`), else
`get_placeholder_mask` raises.

Also: tiny random-weight LLaVA configs (no download), the `paper` hub loader, and the key mapping from the
original LLaVA checkpoint format (the released Fourier-LLaVA checkpoints) to this model.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.fourier_vlm.compress import TokenCompressor


def llava_config(arch: Mapping[str, Any]) -> Any:
    """A `LlavaConfig` from a `model.arch` mapping (vision: {...}, text: {...}, image_token_id, ...).

    Keys of `vision` / `text` are `CLIPVisionConfig` / `LlamaConfig` arguments (hidden_size,
    intermediate_size, num_hidden_layers, num_attention_heads, image_size, patch_size, vocab_size, ...).
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    v, t = dict(arch["vision"]), dict(arch["text"])
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**v), text_config=LlamaConfig(**t),
        image_token_id=int(arch.get("image_token_id", t["vocab_size"] - 1)),
        vision_feature_layer=int(arch.get("vision_feature_layer", -2)),
        vision_feature_select_strategy=str(arch.get("vision_feature_select_strategy", "default")),
        projector_hidden_act="gelu",
    )


def random_llava(arch: Mapping[str, Any], seed: int = 0, dtype: torch.dtype = torch.float32) -> Any:
    """A `LlavaForConditionalGeneration` with seeded random weights built from `arch` (nothing downloaded)."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava_config(arch)).to(dtype).eval()
    model.generation_config.pad_token_id = model.config.text_config.pad_token_id or 0
    return model


def grid_side(model: Any) -> int:
    """Patch-grid side of the vision tower (24 for CLIP 336/14)."""
    v = model.config.vision_config
    return int(v.image_size) // int(v.patch_size)


def image_token_count(model: Any, compressor: TokenCompressor | None) -> int:
    """Image placeholders a prompt needs for this model and compressor."""
    side = grid_side(model)
    base = side * side + (0 if model.config.vision_feature_select_strategy == "default" else 1)
    if compressor is None or compressor.method == "none":
        return base
    if model.config.vision_feature_select_strategy != "default":
        raise ConfigError("model.arch.vision_feature_select_strategy",
                          "the compressor needs the CLS token dropped (strategy 'default') to see a pure grid")
    return compressor.out_tokens(base, (side, side))


def apply_compressor(model: Any, compressor: TokenCompressor | None) -> Any:
    """Install `compressor` between the vision tower and the projector of a LLaVA model (in place).

    Calling it again replaces the compressor; `None` restores the uncompressed model.

    Returns:
        The model.
    """
    inner = model.model  # LlavaModel
    original = getattr(inner, "_fourier_original_get_image_features", None) or inner.get_image_features
    inner._fourier_original_get_image_features = original
    if compressor is None or compressor.method == "none":
        inner.get_image_features = original
        inner._fourier_compressor = None
        return model
    side = grid_side(model)

    def pre_hook(module: Any, args: tuple) -> tuple:
        (x,) = args  # (B, 576, C_vision): CLS dropped, layer -2
        return (compressor(x, (side, side)),)  # (B, k*k, C_vision)

    @functools.wraps(original)
    def get_image_features(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("image_sizes") is not None:
            raise ConfigError("fourier", "image_sizes (variable-resolution LLaVA) is not supported by the "
                              "LLaVA-1.5 compressor path")
        handle = inner.multi_modal_projector.register_forward_pre_hook(pre_hook)
        try:
            return original(*args, **kwargs)
        finally:
            handle.remove()

    inner.get_image_features = get_image_features
    inner._fourier_compressor = compressor
    return model


def prompt_ids(model: Any, n_image_tokens: int, text_ids: list[int] | torch.Tensor, batch: int = 1) -> torch.Tensor:
    """input_ids (batch, 1 + n_image + len(text)): BOS, the image placeholders, then the text ids."""
    text = torch.as_tensor(text_ids, dtype=torch.long).flatten()
    bos = torch.tensor([model.config.text_config.bos_token_id or 1], dtype=torch.long)
    img = torch.full((n_image_tokens,), int(model.config.image_token_id), dtype=torch.long)
    return torch.cat([bos, img, text]).unsqueeze(0).expand(batch, -1).contiguous()


def expand_image_placeholder(prompt: str, n_image_tokens: int, image_token: str = "<image>") -> str:
    """Processor-side counterpart: expand one `<image>` in a text prompt to `n_image_tokens` copies.

    (`LlavaProcessor` expands `<image>` to (H/p)(W/p) - 1 copies; with the compressor the count is k*k.)
    """
    if prompt.count(image_token) != 1:
        raise ConfigError("prompt", f"the prompt must contain exactly one {image_token!r}")
    return prompt.replace(image_token, image_token * n_image_tokens)


def budget_processor(processor: Any, k: int) -> Any:
    """Make a `LlavaProcessor` emit k*k placeholders per image (in place) by setting its patch_size.

    The processor counts (size/patch_size)^2 + num_additional_image_tokens (- 1 for strategy "default");
    with patch_size = size / k and one additional token that is exactly k*k.

    Raises:
        ConfigError: when the image size is not a multiple of k.
    """
    size = processor.image_processor.crop_size["height"] if hasattr(processor.image_processor, "crop_size") \
        else processor.image_processor.size["shortest_edge"]
    if size % k:
        raise ConfigError("fourier.k", f"image size {size} is not a multiple of k={k}")
    processor.patch_size = size // k
    processor.num_additional_image_tokens = 1 if processor.vision_feature_select_strategy == "default" else 0
    return processor


# --------------------------------------------------------------------------------- checkpoints (paper profile)
# Original LLaVA (haotian-liu/LLaVA, LlavaLlamaForCausalLM) state-dict prefixes -> transformers' Llava.
ORIGINAL_KEY_MAP: list[tuple[str, str]] = [
    (r"^model\.mm_projector\.0\.", "model.multi_modal_projector.linear_1."),
    (r"^model\.mm_projector\.2\.", "model.multi_modal_projector.linear_2."),
    (r"^model\.vision_tower\.vision_tower\.vision_model\.", "model.vision_tower."),
    (r"^model\.(embed_tokens|layers|norm)\b", r"model.language_model.\1"),
    (r"^lm_head\.", "lm_head."),
]


def convert_original_llava_state_dict(sd: Mapping[str, torch.Tensor], vocab_size: int | None = None
                                      ) -> dict[str, torch.Tensor]:
    """Map an original-format LLaVA-1.5 state dict (e.g. whyisverysmart/Fourier-LLaVA-v1.5-7B-*) to the keys
    of `LlavaForConditionalGeneration`.

    The original LLM has 32000 tokens; llava-hf adds `<image>` (id 32000) and pads to 32064. With
    `vocab_size`, `embed_tokens` and `lm_head` are zero-padded to that many rows (the loader then copies the
    base model's rows for the added tokens).

    Raises:
        ConfigError: on a key that matches no rule (the message lists it).
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        if key.endswith("rotary_emb.inv_freq"):  # a buffer in old checkpoints, recomputed by transformers
            continue
        for pat, rep in ORIGINAL_KEY_MAP:
            if re.search(pat, key):
                new = re.sub(pat, rep, key)
                break
        else:
            unknown.append(key)
            continue
        if vocab_size and new in ("model.language_model.embed_tokens.weight", "lm_head.weight") \
                and value.shape[0] < vocab_size:
            pad = value.new_zeros(vocab_size - value.shape[0], value.shape[1])
            value = torch.cat([value, pad], 0)
        out[new] = value
    if unknown:
        raise ConfigError("model.hub_id", f"{len(unknown)} keys of the original LLaVA checkpoint have no mapping, "
                          f"e.g. {unknown[:3]}")
    return out


def load_paper_llava(cfg: Any, dtype: torch.dtype, device: str) -> Any:
    """The `paper` profile's model: llava-hf/llava-1.5-7b-hf by hub id, optionally with the weights of a
    Fourier-LLaVA checkpoint (original format, `cfg.fourier_checkpoint`) converted on top.

    Raises:
        ConfigError: when the hub is unreachable or a checkpoint cannot be read.
    """
    from transformers import LlavaForConditionalGeneration

    local_only = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    try:
        model = LlavaForConditionalGeneration.from_pretrained(cfg.hub_id, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError) as e:
        raise ConfigError("model.hub_id", f"cannot load {cfg.hub_id!r} ({type(e).__name__}); this machine may have "
                          "no hub access: use profile=cpu or profile=smoke (random-weight LLaVA)") from e
    ckpt = cfg.get("fourier_checkpoint")
    if ckpt:
        sd = _read_original_checkpoint(str(ckpt), local_only)
        base = model.state_dict()
        conv = convert_original_llava_state_dict(sd, base["lm_head.weight"].shape[0])
        for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            n_orig = sd.get("model.embed_tokens.weight" if "embed" in name else "lm_head.weight").shape[0]
            conv[name][n_orig:] = base[name][n_orig:]  # the added <image>/<pad> rows come from llava-hf
        missing, unexpected = model.load_state_dict(conv, strict=False)
        if unexpected:
            raise ConfigError("model.fourier_checkpoint", f"unexpected keys after conversion: {unexpected[:3]}")
        # the original checkpoints hold the LLM and the projector; the (frozen) CLIP tower comes from the base
        not_vision = [k for k in missing if not k.startswith("model.vision_tower.")]
        if not_vision:
            raise ConfigError("model.fourier_checkpoint", f"{len(not_vision)} LLM/projector weights missing from "
                              f"{ckpt}, e.g. {not_vision[:3]}")
    return model.eval().to(device)


def _read_original_checkpoint(ckpt: str, local_only: bool) -> dict[str, torch.Tensor]:
    from huggingface_hub import snapshot_download

    folder = Path(ckpt) if Path(ckpt).exists() else Path(
        snapshot_download(ckpt, local_files_only=local_only, allow_patterns=["*.safetensors", "*.bin", "*.json"]))
    sd: dict[str, torch.Tensor] = {}
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise ConfigError("model.fourier_checkpoint", f"no weights in {folder}")
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd.update(load_file(str(f)))
        else:
            sd.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return sd
