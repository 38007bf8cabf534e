"""The pipeline's cached stages on the core build-once cache (`llm_efficiency_bench.core.cache`), and its progress bars.

Each stage is one `CacheEntry` under `cache_dir()/adaptive_step/<stage>-<config_key(key_obj)>/` with
`done.json` (the layout the pipeline always had, so entries built before the core cache existed stay
valid). `pipeline.rerun=[<stage>, ...]` removes and rebuilds the named stages once per process.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from llm_efficiency_bench.core.cache import CacheEntry

KIND = "adaptive_step"
Log = Callable[[str], None]


def stage(cfg: Any, name: str, key_obj: Any) -> CacheEntry:
    """The cache entry of stage `name`, keyed by `key_obj` (settings and the keys of its inputs)."""
    return CacheEntry(KIND, name, key_obj, rerun=name in list(cfg.pipeline.rerun))


def bar(it: Iterable, total: int, desc: str, enabled: bool):
    """A quiet tqdm bar (updates at most every 2 s; off with `pipeline.progress=false`)."""
    return tqdm(it, total=total, desc=desc, disable=not enabled, mininterval=2.0, leave=False)
