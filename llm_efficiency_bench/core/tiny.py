"""Tiny causal LMs trained from scratch by the suite: deterministic, cached by their settings.

A `tiny` model config names an architecture (Llama family), a tokenizer size and a training budget; the
first use trains it on text from the data directory and caches the folder (`llm_efficiency_bench.core.cache.CacheEntry`)
as `cache_dir()/models/tiny-<name>-<key>`. The same settings and data always give the same weights on one machine.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from llm_efficiency_bench.core.cache import CacheEntry, to_plain  # to_plain: re-exported for older importers
from llm_efficiency_bench.core.checkpoint import Checkpoint, restore_training, save_training
from llm_efficiency_bench.core.data import read_text
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.paths import data_dir as resolve_data_dir


def read_corpus(root: Path, entries: Sequence[str], max_chars: int) -> str:
    """Concatenate text files (or all `.txt` in folders, sorted) from the data directory."""
    parts: list[str] = []
    total = 0
    for entry in entries:
        p = root / entry
        files = sorted(p.glob("*.txt")) if p.is_dir() else [p]
        for f in files:
            if not f.exists():
                raise ConfigError("model.train.corpus", f"training text {f} not found in the data directory")
            text = read_text(f, "model.train.corpus")
            parts.append(text)
            total += len(text)
            if total >= max_chars:
                return "\n".join(parts)[:max_chars]
    return "\n".join(parts)[:max_chars]


def train_bpe_tokenizer(text: str, vocab_size: int, extra_special: Sequence[str] = ()):
    """A byte-level BPE tokenizer trained on `text` (deterministic), wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", *extra_special]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    chunk = 100_000
    tok.train_from_iterator((text[i:i + chunk] for i in range(0, len(text), chunk)), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", additional_special_tokens=list(extra_special) or None)


def llama_config(arch: dict[str, Any], vocab_size: int, context: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=arch["hidden"], intermediate_size=arch["intermediate"],
        num_hidden_layers=arch["layers"], num_attention_heads=arch["heads"],
        num_key_value_heads=arch.get("kv_heads", arch["heads"]), max_position_embeddings=context,
        rope_theta=float(arch.get("rope_theta", 10000.0)), tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )


def train_causal_lm(model, ids: torch.Tensor, train: dict[str, Any],
                    batch_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    log: Callable[[str], None] = print,
                    on_step: Callable[[int, float], None] | None = None,
                    checkpoint: Checkpoint | None = None, every_steps: int = 0) -> list[float]:
    """Train `model` on random windows of the token stream `ids` with AdamW and cosine decay.

    Args:
        model: a transformers causal LM in train mode.
        ids: 1-D token stream.
        train: steps, batch, seq_len, lr, seed, (warmup, weight_decay).
        batch_fn: optional transform of each (B, T) batch (e.g. prepend a sink token).
        on_step: optional callback after every optimizer step with (step index, loss), e.g. a progress bar
            or a periodic probe of the model (the model is in train mode when it is called).
        checkpoint: optional resume state (`llm_efficiency_bench.core.checkpoint.Checkpoint`, keyed by the caller on
            everything that defines the run). Model, optimizer, batch-sampler and torch RNG state and the
            losses so far are saved every `every_steps` steps; a matching checkpoint resumes from there with
            bit-identical losses. It is cleared once training finishes.
        every_steps: checkpoint interval in optimizer steps (0 = never save).

    Returns:
        The loss after every step.
    """
    steps, bsz, seq = int(train["steps"]), int(train["batch"]), int(train["seq_len"])
    lr, warmup = float(train["lr"]), int(train.get("warmup", max(1, steps // 20)))
    if ids.numel() <= seq + 1:
        raise ConfigError("model.train.seq_len", f"corpus of {ids.numel()} tokens is shorter than seq_len {seq}")
    gen = torch.Generator().manual_seed(int(train["seed"]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(train.get("weight_decay", 0.1)),
                            betas=(0.9, 0.95))
    losses: list[float] = restore_training(checkpoint, model, opt, gen)  # [] unless resuming
    if losses:
        log(f"[tiny] resumed from {checkpoint.path} at step {len(losses)}/{steps}")
    device = next(model.parameters()).device
    model.train()
    t0 = time.time()
    for step in range(len(losses), steps):
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * max(scale, 0.05)
        starts = torch.randint(0, ids.numel() - seq - 1, (bsz,), generator=gen)
        batch = torch.stack([ids[s:s + seq + 1] for s in starts.tolist()])  # (B, T+1)
        if batch_fn is not None:
            batch = batch_fn(batch)
        batch = batch.to(device)
        out = model(input_ids=batch[:, :-1], labels=batch[:, 1:].clone(), shift_labels=batch[:, 1:].clone())
        loss = out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        save_training(checkpoint, every_steps, step, steps, model, opt, gen, losses)
        if on_step is not None:
            on_step(step, losses[-1])
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            log(f"[tiny] step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    if checkpoint is not None:
        checkpoint.clear()
    model.eval()
    return losses


def tiny_model_folder(cfg: Any, data_dir_setting: str | None) -> Path:
    """Train (once) and cache the tiny model `cfg` describes; return its folder."""
    from transformers import LlamaForCausalLM

    plain = to_plain(cfg)
    arch, train = plain["arch"], plain["train"]
    root = resolve_data_dir(data_dir_setting)
    text = read_corpus(root, train["corpus"], int(train.get("max_chars", 2_000_000)))
    entry = CacheEntry("models", f"tiny-{plain['name']}",
                       {"arch": arch, "train": train, "context": plain["context"],
                        "text_sha256": hashlib.sha256(text.encode()).hexdigest()})

    def build(work: Path) -> dict[str, Any]:
        print(f"[tiny] training {plain['name']} from scratch -> {entry.dir}")
        torch.manual_seed(int(train["seed"]))
        tok = train_bpe_tokenizer(text, int(arch["vocab"]))
        ids = torch.tensor(tok(text).input_ids, dtype=torch.long)
        model = LlamaForCausalLM(llama_config(arch, len(tok), int(plain["context"])))
        t0 = time.time()
        losses = train_causal_lm(model, ids, train)
        model.save_pretrained(work)
        tok.save_pretrained(work)
        return {"final_loss": losses[-1], "losses_every_10": losses[::10], "train_seconds": time.time() - t0,
                "corpus_tokens": ids.numel(), "arch": arch, "train": train}

    return entry.get_or_build(build)
