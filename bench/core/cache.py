"""The build-once cache: one folder per entry, keyed by the settings and inputs that determine it.

Converted models, tiny models trained from scratch and the cached stages of a pipeline all follow one
rule: *build into the cache once, atomically, keyed by settings*. An entry is published as

    <cache_dir()>/<kind>/<name>-<key>/        (key = `config_key(key_obj)`, 16 hex digits)
        done.json                              (written last: an entry without it is not an entry)
        ...the builder's files...

and built as follows:

1. an exclusive `flock` on `<entry>.lock` serialises builders of the same key, across processes (two
   sweep jobs that need the same model: the second waits, then finds it built and only loads it);
2. the builder writes into `<entry>.partial/`, which survives an interrupted build, so a builder that
   checkpoints there (e.g. per batch of questions) resumes where it stopped;
3. `done.json` is written into the partial folder, which is then published with `os.replace`; a reader
   never sees a half-written entry.

Usage::

    entry = CacheEntry("models", "tiny-llama", {"arch": arch, "train": train})
    folder = entry.get_or_build(lambda work: train_into(work))   # builder returns the info dict

The builder receives the partial folder (a `Path`) and returns a JSON-able dict kept as `done.json`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.core.paths import cache_dir

DONE = "done.json"
RERUN = "rerun.json"  # in a partial build started by a rerun: which code started it


def to_plain(cfg: Any) -> Any:
    """An OmegaConf node as plain Python containers, resolved (anything else unchanged)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return cfg


def config_key(obj: Any) -> str:
    """A short stable hash of a JSON-able object (the settings that determine a result).

    OmegaConf nodes are converted first, so a config and its plain copy give the same key.
    """
    blob = json.dumps(to_plain(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (an input of a cache key: the data an entry was built from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def save_atomic(path: Path, obj: Any) -> None:
    """`torch.save` to a temporary name, then `os.replace`: a kill mid-write leaves no torn file."""
    import torch

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


_CLEARED: set[Path] = set()  # entries a `rerun` already removed in this process (rebuild once, not per call)


class CacheEntry:
    """One build-once cache entry.

    Args:
        kind: top folder in the cache (`models`, `adaptive_step`, `sink_pretrain`, ...).
        name: readable prefix of the entry's folder name.
        key_obj: the settings and input digests that determine the entry (hashed with `config_key`).
        rerun: remove a published entry once in this process, then rebuild it; a partial build is kept only
            when an earlier rerun of the same code started it (an interrupted rerun resumes).
        root: cache root (default `cache_dir()`, i.e. `BENCH_CACHE`).
    """

    def __init__(self, kind: str, name: str, key_obj: Any, rerun: bool = False, root: Path | None = None):
        self.kind, self.name = kind, name
        self.key = config_key(key_obj)
        base = Path(root) if root is not None else cache_dir()
        self.dir = base / kind / f"{name}-{self.key}"
        self.partial = self.dir.with_name(self.dir.name + ".partial")
        self.lock_path = self.dir.with_name(self.dir.name + ".lock")
        if rerun and self.dir not in _CLEARED:
            self._clear_for_rerun()
            _CLEARED.add(self.dir)

    def _clear_for_rerun(self) -> None:
        """Remove the published entry, and the partial build unless a rerun by this same code started it.

        A rerun exists because something changed, so an old partial build must not be resumed; but a rerun
        that was interrupted and is started again (same command, same code: `env.code_hash`) resumes its own
        partial progress instead of throwing it away. The partial folder carries `rerun.json` for that.
        """
        from bench.core.env import code_hash

        here = code_hash()
        marker = self.partial / RERUN
        with self._locked():
            if self.dir.exists():
                shutil.rmtree(self.dir)
            mine = marker.exists() and json.loads(marker.read_text()).get("code_hash") == here
            if self.partial.exists() and not mine:
                shutil.rmtree(self.partial)
            self.partial.mkdir(parents=True, exist_ok=True)
            write_json_atomic(marker, {"code_hash": here})

    @property
    def done(self) -> bool:
        return (self.dir / DONE).exists()

    def adopt(self, marker: str) -> bool:
        """Accept a folder published by the pre-`CacheEntry` layout at this entry's path as done.

        Those builders also published atomically (`os.replace` of a temporary folder), so a folder holding
        their last-written file `marker` is complete: stamping it keeps users' caches valid. Returns `done`.
        """
        if not self.done and (self.dir / marker).exists():
            with self._locked():
                if not self.done and (self.dir / marker).exists():
                    write_json_atomic(self.dir / DONE, {"key": self.key, "name": self.name, "adopted": marker})
        return self.done

    def info(self) -> dict[str, Any]:
        """The builder's info dict (`done.json`) of a published entry."""
        return json.loads((self.dir / DONE).read_text())

    def load(self, name: str) -> Any:
        import torch

        return torch.load(self.dir / name, weights_only=False)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def get_or_build(self, builder: Callable[[Path], dict[str, Any] | None]) -> Path:
        """Return the published folder, building it first (once, under the lock) if needed.

        Args:
            builder: `builder(work) -> info`; writes its files into `work` (the partial folder, which may
                hold an interrupted build's checkpoints) and returns the info kept as `done.json`.
        """
        if self.done:
            return self.dir
        with self._locked():
            if self.done:  # another process built it while we waited for the lock
                return self.dir
            self.partial.mkdir(parents=True, exist_ok=True)
            info = builder(self.partial) or {}
            write_json_atomic(self.partial / DONE, {"key": self.key, "name": self.name, **info})
            if self.dir.exists():  # a stale, unfinished folder (no done.json) from an older layout
                shutil.rmtree(self.dir)
            os.replace(self.partial, self.dir)
        return self.dir
