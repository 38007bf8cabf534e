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
4. `done.json` also records every file's size and SHA-256 (`files`); each use checks the sizes and a
   SHA-256 of each file's first and last MiB, so an entry truncated or overwritten afterwards (a full disk,
   a torn copy, a hand edit) is named in one line and rebuilt instead of being trusted. Hashing a whole
   540 MB model on every load would add ~0.4 s to a load that takes well under a second; truncation and
   torn writes always change the size, and header damage the first MiB. `verify(full=True)` compares the
   whole-file SHA-256 too. An entry whose `done.json` lists no files is fingerprinted on first use.

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
from typing import Any, Callable, Iterator, Sequence

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.paths import cache_dir

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


class UnsafeFile(ValueError):
    """A `.pt` file holds objects other than tensors and plain data (a pickle that could run code)."""


def load_plain(path: str | Path, allow: Sequence[type] = ()) -> Any:
    """`torch.load` of tensors and plain data only (`weights_only=True`), onto the CPU.

    A full unpickle runs whatever code the file names, so a checkpoint someone else wrote into a results
    folder would be code execution; the weights-only unpickler rebuilds tensors, numbers, strings, lists,
    tuples and dicts, plus the classes in `allow` (plain dataclasses of the suite's own state).

    Raises:
        UnsafeFile: naming the file, when it holds anything else.
    """
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise  # a torn or garbled file: the caller's own handling
        why = next((ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln), "not plain data")
        raise UnsafeFile(f"{path} holds more than tensors and plain data ({why}); refused: "
                         "loading it would run code") from None


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


EDGE = 1 << 20  # bytes hashed at each end of a file on every use


def fingerprint(path: Path, full: bool = True) -> dict[str, Any]:
    """`size`, `edges` (SHA-256 of the first and last MiB, or of the whole file when it is at most 2 MiB)
    and, with `full`, `sha256` of the whole file."""
    size = path.stat().st_size
    edges = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= 2 * EDGE:
            edges.update(f.read())
        else:
            edges.update(f.read(EDGE))
            f.seek(size - EDGE)
            edges.update(f.read(EDGE))
    out: dict[str, Any] = {"size": size, "edges": edges.hexdigest()}
    if full:
        out["sha256"] = edges.hexdigest() if size <= 2 * EDGE else file_digest(path)
    return out


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Fingerprints of every file of an entry folder but its own bookkeeping (`done.json`, `rerun.json`)."""
    return {str(p.relative_to(folder)): fingerprint(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (DONE, RERUN)}


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
        from llm_efficiency_bench.core.env import code_hash

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

    def verify(self, full: bool = False, record: bool = True) -> str | None:
        """What is wrong with the published entry (one sentence naming the file), or None when it is intact.

        Checks every file recorded at publish: present, same size, same SHA-256 of its first and last MiB
        (`full`: of the whole file). An entry without recorded files gets them recorded now (`record`).
        """
        try:
            info = self.info()
        except (OSError, ValueError) as e:
            return f"{DONE} is unreadable ({e})"
        files = info.get("files")
        if not isinstance(files, dict):  # a `done.json` without sizes (an older layout): fingerprint it now
            if not record:
                return None
            with self._locked():
                if self.done:
                    write_json_atomic(self.dir / DONE, {**info, "files": _manifest(self.dir)})
            return None
        for rel, want in sorted(files.items()):
            if not isinstance(want, dict) or not isinstance(want.get("size"), int):
                return f"{DONE} lists {rel} without its size"
            p = self.dir / rel
            if not p.is_file():
                return f"{rel} is missing"
            size = p.stat().st_size
            if size != want.get("size"):
                return f"{rel} is {size:,} bytes, {want.get('size'):,} when published"
            got = fingerprint(p, full=full and "sha256" in want)
            if got["edges"] != want.get("edges") or (full and got.get("sha256") != want.get("sha256")):
                return f"{rel} changed since it was published (SHA-256 differs)"
        return None

    def _intact(self) -> bool:
        """Whether the published entry passes `verify`; a damaged one is named, then removed for a rebuild."""
        problem = self.verify()
        if problem is None:
            return True
        print(f"[cache] damaged entry {self.dir}: {problem}; rebuilding it", flush=True)
        with self._locked():
            if self.done and self.verify(record=False) is not None:  # still damaged (not rebuilt meanwhile)
                shutil.rmtree(self.dir)
        return self.done

    def adopt(self, marker: str) -> bool:
        """Accept a folder published by the pre-`CacheEntry` layout at this entry's path as done.

        Those builders also published atomically (`os.replace` of a temporary folder), so a folder holding
        their last-written file `marker` is complete: stamping it keeps users' caches valid. Returns whether
        the entry is done and intact (a damaged one is removed: the caller builds it again).
        """
        if not self.done and (self.dir / marker).exists():
            with self._locked():
                if not self.done and (self.dir / marker).exists():
                    write_json_atomic(self.dir / DONE, {"key": self.key, "name": self.name, "adopted": marker,
                                                        "files": _manifest(self.dir)})
        return self.done and self._intact()

    def info(self) -> dict[str, Any]:
        """The builder's info dict (`done.json`) of a published entry."""
        return json.loads((self.dir / DONE).read_text())

    def load(self, name: str, allow: Sequence[type] = ()) -> Any:
        """A `.pt` file of the entry: tensors and plain data only (`load_plain`), plus the classes in `allow`.

        Raises:
            ConfigError: naming the entry to delete when the file holds anything else.
        """
        try:
            return load_plain(self.dir / name, allow)
        except UnsafeFile as e:
            raise ConfigError("BENCH_CACHE", f"cache entry {self.dir}: {e}; delete that folder to rebuild it") from None

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
        """Return the published folder, building it first (once, under the lock) if it is missing or damaged.

        Args:
            builder: `builder(work) -> info`; writes its files into `work` (the partial folder, which may
                hold an interrupted build's checkpoints) and returns the info kept as `done.json`.
        """
        if self.done and self._intact():
            return self.dir
        with self._locked():
            if self.done:  # another process built it while we waited for the lock
                return self.dir
            self.partial.mkdir(parents=True, exist_ok=True)
            info = builder(self.partial) or {}
            write_json_atomic(self.partial / DONE, {"key": self.key, "name": self.name, **info,
                                                    "files": _manifest(self.partial)})
            if self.dir.exists():  # a stale, unfinished folder (no done.json) from an older layout
                shutil.rmtree(self.dir)
            os.replace(self.partial, self.dir)
        return self.dir
