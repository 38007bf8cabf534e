"""Checkpoints for long runs: atomic save, resume only when the run's key matches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from llm_efficiency_bench.core.cache import UnsafeFile, load_plain
from llm_efficiency_bench.core.cache import config_key  # noqa: F401  (re-exported: one key function)


class Checkpoint:
    """A single-file checkpoint `<dir>/<name>.pt` tagged with the run key.

    A checkpoint written by a run with different settings is ignored (and replaced), so a resume can
    never mix two configurations. It is read back as tensors and plain data only (`load_plain`): a file
    holding any other object is refused with one line and the run starts over, since a resume state in a
    results folder may come from anyone.

    Args:
        directory: the folder of the checkpoint file.
        name: the file's stem.
        key: the run key (settings that define the run).
        allow: classes of the caller's own state that may be rebuilt besides plain data (plain dataclasses).
    """

    def __init__(self, directory: Path, name: str, key: str, allow: Sequence[type] = ()):
        self.path = Path(directory) / f"{name}.pt"
        self.key = key
        self.allow = tuple(allow)

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = load_plain(self.path, self.allow)
        except UnsafeFile as e:
            print(f"[checkpoint] {e}; starting over")
            return None
        except Exception as e:  # a torn file from a kill mid-write of an older version
            print(f"[checkpoint] ignoring unreadable {self.path}: {e}")
            return None
        if not isinstance(state, dict) or state.get("key") != self.key:
            print(f"[checkpoint] {self.path} belongs to other settings; starting over")
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".pt.tmp")
        torch.save({**state, "key": self.key}, tmp)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        if self.path.exists():
            self.path.unlink()


def restore_training(checkpoint: Checkpoint | None, model: Any, opt: Any, gen: torch.Generator) -> list[float]:
    """Resume a training loop: model, optimizer, batch-sampler and torch RNG state from a matching checkpoint.

    Returns:
        The losses of the steps already done (empty without a matching checkpoint), so the loop continues at
        step `len(losses)` and gives bit-identical losses to an uninterrupted run.
    """
    state = checkpoint.load() if checkpoint is not None else None
    if state is None:
        return []
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["sampler_rng"])
    torch.set_rng_state(state["torch_rng"])
    return list(state["losses"])


def save_training(checkpoint: Checkpoint | None, every_steps: int, step: int, steps: int, model: Any, opt: Any,
                  gen: torch.Generator, losses: list[float]) -> None:
    """After optimizer step `step` (0-based) of `steps`: save the resume state every `every_steps` steps."""
    if checkpoint is not None and every_steps > 0 and (step + 1) % every_steps == 0 and step + 1 < steps:
        checkpoint.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "sampler_rng": gen.get_state(), "torch_rng": torch.get_rng_state(), "losses": losses})
