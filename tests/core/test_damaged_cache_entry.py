"""A build-once cache entry damaged after it was published (truncated, overwritten, a file gone) is named in
one line and rebuilt, never trusted because its `done.json` exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from llm_efficiency_bench.core.cache import CacheEntry

# A tiny Llama of the suite (source: tiny), trained for two steps on a few lines: a real converted model
# folder (config, model.safetensors, tokenizer) in a second.
TINY = {"name": "tiny_test", "source": "tiny", "family": "llama", "context": 64,
        "arch": {"hidden": 16, "intermediate": 32, "layers": 1, "heads": 2, "kv_heads": 1, "vocab": 300},
        "train": {"corpus": ["corpus.txt"], "max_chars": 20000, "steps": 2, "batch": 2, "seq_len": 16,
                  "lr": 0.003, "seed": 0}}


@pytest.fixture
def tiny_cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.txt").write_text("To be, or not to be, that is the question.\n" * 200)
    return OmegaConf.create(TINY), str(tmp_path / "data")


def test_truncated_model_is_named_and_rebuilt(tiny_cfg, capsys):
    from llm_efficiency_bench.core.models import load_model

    cfg, data = tiny_cfg
    lm = load_model(cfg, data_dir=data)
    folder = Path(lm.model.name_or_path)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    assert size > 1000
    with open(weights, "r+b") as f:
        f.truncate(1000)
    capsys.readouterr()
    again = load_model(cfg, data_dir=data)  # not a safetensors traceback: rebuilt
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[cache]")]
    assert lines == [f"[cache] damaged entry {folder}: model.safetensors is 1,000 bytes, {size:,} when "
                     "published; rebuilding it"]
    assert weights.stat().st_size == size and Path(again.model.name_or_path) == folder
    assert json.loads((folder / "done.json").read_text())["files"]["model.safetensors"]["size"] == size


@pytest.mark.parametrize("damage,expect", [
    (lambda d: (d / "w.bin").unlink(), "w.bin is missing"),
    (lambda d: (d / "w.bin").write_bytes(b"y" * 3000), "w.bin changed since it was published"),
    (lambda d: (d / "big.bin").write_bytes((d / "big.bin").read_bytes()[:-1] + b"!"), "big.bin changed"),
], ids=["missing", "same-size-overwrite", "tail-of-a-large-file"])
def test_damaged_entry_is_named_and_rebuilt(tmp_path, capsys, damage, expect):
    calls = []

    def build(work: Path) -> dict:
        calls.append(1)
        (work / "w.bin").write_bytes(b"x" * 3000)
        (work / "big.bin").write_bytes(bytes(range(256)) * (3 << 12))  # 3 MiB: only its ends are hashed
        return {}

    entry = CacheEntry("models", "m", {"a": 1}, root=tmp_path)
    entry.get_or_build(build)
    assert entry.verify(full=True) is None
    damage(entry.dir)
    assert expect in entry.verify(full=True)
    capsys.readouterr()
    entry.get_or_build(build)
    assert calls == [1, 1] and entry.verify(full=True) is None
    assert f"[cache] damaged entry {entry.dir}: {expect}" in capsys.readouterr().out


def test_an_entry_without_recorded_sizes_is_fingerprinted_then_checked(tmp_path):
    entry = CacheEntry("models", "old", {"a": 2}, root=tmp_path)
    entry.get_or_build(lambda w: (w / "f.bin").write_bytes(b"z" * 50) and {})
    info = entry.info()
    del info["files"]
    (entry.dir / "done.json").write_text(json.dumps(info))  # a done.json that lists no files
    assert entry.verify() is None and entry.info()["files"]["f.bin"]["size"] == 50
    (entry.dir / "f.bin").write_bytes(b"z")
    assert entry.verify() == "f.bin is 1 bytes, 50 when published"
