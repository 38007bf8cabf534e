"""Checkpoints for long runs: atomic save, resume only when the run's key matches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from bench.core.cache import config_key  # noqa: F401  (re-exported: one key function)


class Checkpoint:
    """A single-file checkpoint `<dir>/<name>.pt` tagged with the run key.

    A checkpoint written by a run with different settings is ignored (and replaced), so a resume can
    never mix two configurations.
    """

    def __init__(self, directory: Path, name: str, key: str):
        self.path = Path(directory) / f"{name}.pt"
        self.key = key

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as e:  # a torn file from a kill mid-write of an older version
            print(f"[checkpoint] ignoring unreadable {self.path}: {e}")
            return None
        if state.get("key") != self.key:
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
