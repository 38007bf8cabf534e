"""Where the suite reads data and keeps caches. Nothing machine-specific is hard-coded."""

from __future__ import annotations

import os
from pathlib import Path

from llm_efficiency_bench.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]  # a checkout: references/, results/, docs/
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the Hydra tree (package data)


def cache_dir() -> Path:
    """Cache for converted and trained models (`BENCH_CACHE`, default `~/.cache/llm-efficiency-bench`)."""
    root = os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "llm-efficiency-bench"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(setting: str | None) -> Path:
    """Resolve the data directory from the `data_dir` setting or `BENCH_DATA_DIR`.

    Raises:
        ConfigError: when neither is set or the folder does not exist.
    """
    value = setting or os.environ.get("BENCH_DATA_DIR")
    if not value:
        raise ConfigError(
            "data_dir",
            "no data directory set: pass data_dir=<folder> or set BENCH_DATA_DIR "
            "(CI uses ../shared/data; `data=pg19` fetches PG19 through `datasets` on a machine with network)",
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError("data_dir", f"data directory {path} does not exist")
    return path
