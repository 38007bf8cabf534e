"""The pipeline's cached stages on the core build-once cache (`llm_efficiency_bench.core.cache`): each stage's
inputs and key, its cache entry, and the progress bars.

A stage reads nothing but its inputs: a frozen dataclass (`StageInputs`, one per stage in `stage_inputs.py`)
holding the settings it uses and the keys of the upstream results it consumes. The stage's cache key is
computed from that object alone (`StageInputs.key_obj`), so a setting cannot reach a stage without reaching
its key. An input left out of the key (how many rows go through the model at once, where the data lives) is
declared with `unkeyed(why)`, which says in one place why, or what follows from it.

Each stage is one `CacheEntry` under `cache_dir()/adaptive_step/<stage>-<config_key(key_obj)>/` with
`done.json`. `pipeline.rerun=[<stage>, ...]` (`RunOptions.rerun`) removes and rebuilds the named stages once
per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from llm_efficiency_bench.core.cache import CacheEntry, config_key

KIND = "adaptive_step"
Log = Callable[[str], None]
_UNKEYED = "unkeyed"


@dataclass(frozen=True)
class RunOptions:
    """How the stages run, never what they compute (so part of no stage key).

    Attributes:
        rerun: names of the stages whose cache entries are removed and rebuilt (`pipeline.rerun`).
        progress: show progress bars (`pipeline.progress`).
    """

    rerun: frozenset[str] = frozenset()
    progress: bool = True


def unkeyed(why: str) -> Any:
    """Declare a stage input that is left out of the stage's key; `why` says why it does not change the result
    (or what follows where it does)."""
    return field(metadata={_UNKEYED: why}, compare=False)


class StageInputs:
    """Base of a stage's inputs (subclasses are frozen, keyword-only dataclasses).

    Subclasses define `entry_name` (the entry's name) and `key_obj` (what is hashed into the key), both from their
    fields only; every field takes part in `key_obj` unless it is declared with `unkeyed`.
    """

    def entry_name(self) -> str:
        """The cache entry's name (`policy`, `samples_prm`, `labels_confidence`, ...)."""
        raise NotImplementedError

    def key_obj(self) -> Any:
        """The JSON-able object whose hash is the stage key."""
        raise NotImplementedError

    def key(self) -> str:
        """The stage key (the entry folder is `<name>-<key>`)."""
        return config_key(self.key_obj())

    def result_key(self) -> str:
        """What identifies this stage's result inside the keys of the stages that consume it."""
        return self.key()

    def entry(self, run: RunOptions) -> CacheEntry:
        """This stage's cache entry."""
        return stage(run, self.entry_name(), self.key_obj())

    @classmethod
    def unkeyed_fields(cls) -> dict[str, str]:
        """Field name -> why it is left out of the key."""
        return {f.name: f.metadata[_UNKEYED] for f in fields(cls) if _UNKEYED in f.metadata}  # type: ignore[arg-type]


def stage(run: RunOptions, name: str, key_obj: Any) -> CacheEntry:
    """The cache entry of stage `name`, keyed by `key_obj` (settings and the keys of its inputs)."""
    return CacheEntry(KIND, name, key_obj, rerun=name in run.rerun)


def bar(it: Iterable, total: int, desc: str, enabled: bool):
    """A quiet tqdm bar (updates at most every 2 s; off with `pipeline.progress=false`)."""
    return tqdm(it, total=total, desc=desc, disable=not enabled, mininterval=2.0, leave=False)
