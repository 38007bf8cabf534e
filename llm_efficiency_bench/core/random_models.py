"""Seeded random-weight models at published architectures: for speed and memory only.

Latency and memory of a forward depend on the architecture, the sizes and the dtype, not on the weight
values, so a GPU runner without the (gated) checkpoints can still time the papers' real model sizes. A
`model/` config with `source: random` holds the architecture values (`arch`, from the published
`config.json` cited in the YAML) and, for anything but a Llama, the functions that build it
(`builder: {config: "module:fn", model: "module:Class"}`, e.g. LLaVA's config builder).

The model is built directly on the target device in the target dtype (under a `torch.device` context,
so a 13B fp16 model never exists in fp32 or on the CPU), with transformers' own seeded initialisation;
`device="meta"` builds the parameter shapes only (parameter counts, FLOP counting). Nothing is downloaded.

Any quality number from such a model is meaningless; `load_model` therefore refuses `source: random`
unless the caller passes `speed_only=True` (only the speed experiments do).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from llm_efficiency_bench.core.errors import ConfigError

SPEED_ONLY_NOTE = "random weights: speed only"
# A Llama unless the YAML names other builders ("module:attr"): `config` is called with the arch mapping.
DEFAULT_BUILDER = {"config": "llm_efficiency_bench.core.random_models:llama_config", "model": "transformers:LlamaForCausalLM"}


def is_random(model_cfg: Any) -> bool:
    """Whether a `model/` config describes random weights (its numbers are timings, never quality)."""
    return model_cfg.get("source") == "random" or bool(model_cfg.get("random_weights", False))


def speed_note(model_cfg: Any, note: str = "") -> str:
    """`note` with the random-weights label appended when `model_cfg` is a random-weight model."""
    if not is_random(model_cfg):
        return note
    return f"{note}; {SPEED_ONLY_NOTE}" if note else SPEED_ONLY_NOTE


class ByteTokenizer:
    """A byte-level stand-in tokenizer: only prompt *lengths* matter for timing.

    Byte b maps to id 3 + b (modulo the vocabulary for tiny vocabularies); 0/1/2 are pad/bos/eos.
    """

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __init__(self, vocab_size: int):
        if vocab_size < 4:
            raise ConfigError("model.arch.vocab_size", f"vocabulary of {vocab_size} is too small for byte ids")
        self.vocab_size = int(vocab_size)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        n = self.vocab_size - 3
        ids = [3 + (b % n) for b in text.encode("utf-8")]
        return [self.bos_token_id] + ids if add_special_tokens else ids

    def __call__(self, text: str, add_special_tokens: bool = True, **_: Any) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=self.encode(text, add_special_tokens))

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        out = bytes((int(i) - 3) % 256 for i in ids if int(i) >= 3 or not skip_special_tokens)
        return out.decode("utf-8", errors="replace")


def _resolve(path: str, setting: str) -> Any:
    """`"package.module:attr"` -> the attribute (lets a YAML name its builder without core naming a paper)."""
    import importlib

    mod, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(setting, f"cannot import {path!r}: {e}") from e


def _arch(model_cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    arch = model_cfg.get("arch")
    if arch is None:
        raise ConfigError("model.arch", f"random model {model_cfg.get('name')!r} has no `arch` block")
    return OmegaConf.to_container(arch, resolve=True) if OmegaConf.is_config(arch) else dict(arch)


def hf_config(model_cfg: Any) -> Any:
    """The transformers config of a random model, no weights: `builder.config(**arch)` (default LlamaConfig)."""
    builder = model_cfg.get("builder") or {}
    make = _resolve(str(builder.get("config", DEFAULT_BUILDER["config"])), "model.builder.config")
    try:
        return make(_arch(model_cfg))
    except TypeError as e:
        raise ConfigError("model.arch", f"{builder.get('config', DEFAULT_BUILDER['config'])} rejects the arch "
                          f"block: {e}") from e


def build(model_cfg: Any, dtype: torch.dtype, device: str | torch.device, seed: int | None = None) -> Any:
    """The model of `model_cfg` with seeded random weights, built on `device` in `dtype`.

    Args:
        model_cfg: a `model/` config with `source: random`, an `arch` block and optionally `builder`.
        dtype: parameter dtype (the model is created in it, not cast afterwards).
        device: "cpu", "cuda", "cuda:0" or "meta" (shapes only).
        seed: overrides `model_cfg.seed` (default 0); the same seed gives the same weights on one device.

    Returns:
        The eval-mode model (`LlamaForCausalLM` by default).
    """
    config = hf_config(model_cfg)
    builder = model_cfg.get("builder") or {}
    cls = _resolve(str(builder.get("model", DEFAULT_BUILDER["model"])), "model.builder.model")
    torch.manual_seed(int(seed if seed is not None else model_cfg.get("seed", 0)))  # CPU and every CUDA device
    # Allocating under the device context puts every parameter and buffer (RoPE inv_freq too) straight
    # on the target device; `_from_config(dtype=...)` creates them in the target dtype.
    with torch.device(device):
        model = cls._from_config(config, dtype=dtype)
    model.eval()
    if getattr(model, "generation_config", None) is not None:
        text = getattr(config, "text_config", config)
        model.generation_config.pad_token_id = text.pad_token_id or 0
    return model


def parameter_count(model_cfg: Any) -> int:
    """Parameters of the architecture, counted on the meta device (no memory, no init cost)."""
    model = build(model_cfg, torch.float16, "meta")
    return sum(p.numel() for p in model.parameters())


def llama_config(arch: Mapping[str, Any]) -> Any:
    """`LlamaConfig(**arch)`."""
    from transformers import LlamaConfig

    return LlamaConfig(**arch)


def vocab_size(config: Any) -> int:
    return int(getattr(getattr(config, "text_config", config), "vocab_size"))


def load_random(model_cfg: Mapping[str, Any] | Any, dtype: torch.dtype, device: str,
                speed_only: bool) -> tuple[Any, Any, str, int]:
    """`load_model`'s `source: random` branch: refuse quality use, else build the model.

    Returns:
        (model, tokenizer, family, context); `load_model` wraps them as a LoadedModel (this module does not
        import `models`, so the two form no import loop).

    Raises:
        ConfigError("model", ...): when `speed_only` is False (a quality experiment asked for it).
    """
    name = model_cfg.get("name")
    if not speed_only:
        raise ConfigError("model", f"model {name!r} has seeded random weights ({SPEED_ONLY_NOTE}): this experiment "
                          "measures quality (perplexity, accuracy, ...), which random weights cannot give. Use it "
                          "with experiment=speed (or eval_speed), or pick a trained model (e.g. model=llama2_7b "
                          "on a runner with hub access, model=smollm2_135m on CPU)")
    model = build(model_cfg, dtype, device)
    config = model.config
    text = getattr(config, "text_config", config)
    context = int(model_cfg.get("context") or getattr(text, "max_position_embeddings", 0) or 0)
    family = model_cfg.get("family") or config.model_type
    return model, ByteTokenizer(vocab_size(config)), family, context
