"""Resume state never outlives its run and never runs code: a published run clears its `.checkpoint/` (a rerun
measures again), and checkpoints and cached `.pt` files load as tensors and plain data only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from llm_efficiency_bench.core import runner
from llm_efficiency_bench.core.cache import CacheEntry
from llm_efficiency_bench.core.checkpoint import Checkpoint
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.records import read_record
from tests.conftest import compose
from tests.conftest import patch_experiment

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / f"pickle-payload-ran-{os.getpid()}"


def _payload_ran() -> None:
    MARKER.write_text("code from a checkpoint ran")


class Payload:
    """What a hostile checkpoint holds: unpickling it calls a function of the writer's choice."""

    def __reduce__(self):
        return (_payload_ran, ())


def _resumable(seen: list):
    """An experiment that resumes from its checkpoint (counting the earlier legs, as the PPL runs do) and
    leaves its final checkpoint behind, as a finished evaluation does."""
    def fn(ctx):
        ck = Checkpoint(ctx.checkpoint_dir, "stream", "key")
        state = ck.load()
        seen.append(state is not None)
        if state is not None:
            ctx.resumed_seconds = state["elapsed_s"]
        ck.save({"elapsed_s": 500.0, "nll": torch.ones(4), "pos": 4})
        ctx.metric("ppl", 10.0, "ppl", "lower")
    return fn


def test_a_published_run_clears_its_checkpoint_and_a_rerun_measures_again(tmp_path, monkeypatch):
    seen: list = []
    patch_experiment(monkeypatch, _resumable(seen))
    cfg = compose("streaming_llm", ["experiment=ppl_cache", "profile=smoke", f"results_dir={tmp_path}"])
    first = runner.run("streaming_llm", cfg)
    assert not (first.parent / ".checkpoint").exists()
    second = read_record(runner.run("streaming_llm", cfg))  # the identical command again
    assert seen == [False, False]  # measured again, not "resumed" at 100%
    assert second["duration_s"] < 500.0  # the first run's seconds are not counted


def test_a_failed_run_keeps_its_checkpoint_for_the_resume(tmp_path, monkeypatch):
    seen: list = []
    inner = _resumable(seen)

    def failing(ctx):
        inner(ctx)
        raise KeyboardInterrupt

    patch_experiment(monkeypatch, failing)
    cfg = compose("streaming_llm", ["experiment=ppl_cache", "profile=smoke", f"results_dir={tmp_path}"])
    with pytest.raises(KeyboardInterrupt):
        runner.run("streaming_llm", cfg)
    patch_experiment(monkeypatch, inner)
    rec = read_record(runner.run("streaming_llm", cfg))
    assert seen == [False, True] and rec["duration_s"] >= 500.0  # the resume counts the interrupted leg


def test_a_checkpoint_with_a_pickle_payload_is_refused(tmp_path, capsys):
    MARKER.unlink(missing_ok=True)
    torch.save({"key": "k", "nll": torch.ones(3), "x": Payload()}, tmp_path / "stream.pt")
    try:
        assert Checkpoint(tmp_path, "stream", "k").load() is None
        assert not MARKER.exists(), "loading a checkpoint ran code"
    finally:
        MARKER.unlink(missing_ok=True)
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(out) == 1 and str(tmp_path / "stream.pt") in out[0] and "refused" in out[0]


def test_a_cached_file_with_a_pickle_payload_is_refused_naming_the_entry(tmp_path):
    entry = CacheEntry("stage", "s", {"k": 1}, root=tmp_path)
    entry.get_or_build(lambda work: torch.save([Payload()], work / "rows.pt") or {})
    MARKER.unlink(missing_ok=True)
    try:
        with pytest.raises(ConfigError, match=rf"cache entry {entry.dir}: .*rows\.pt .*refused.*delete that folder"):
            entry.load("rows.pt")
        assert not MARKER.exists()
    finally:
        MARKER.unlink(missing_ok=True)


def test_every_resume_state_of_the_suite_round_trips(tmp_path):
    """The states the suite's checkpoints and cached stages hold load back with weights_only=True."""
    from llm_efficiency_bench.adaptive_step import steps
    from llm_efficiency_bench.streaming_llm.engine import StreamState

    cost = steps.Cost()
    cost.add(3, 12, 40, 0.5)
    kv = [torch.randn(1, 2, 3, 4)]
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    states = {
        "ppl": ({"state": StreamState(7, kv, kv, kv, kv).to_dict(), "nll": torch.rand(7), "pos": 7,
                 "elapsed_s": 1.5}, ()),
        "recompute": ({"nll": torch.rand(5), "done": 5, "elapsed_s": 2.0}, ()),
        "training": ({"model": model.state_dict(), "optimizer": opt.state_dict(),
                      "sampler_rng": torch.Generator().get_state(), "torch_rng": torch.get_rng_state(),
                      "losses": [1.0, 0.5]}, ()),
        "samples": ({"rows": [{"q": 0, "ids": [1, 2], "conf": [0.9, 0.8], "finished": True, "correct": False}],
                     "next_q": 1}, ()),
        "labels": ({"labels": [{"hard": [1, 0], "soft": [0.5, 0.25]}], "cost": cost, "next": 1}, (steps.Cost,)),
        "released": ({"scores": [[0.1, 0.2], []], "mismatch": 0}, ()),
        "tvd": ({"rows": [{"greedy": True, "tvd": False, "calls": 3, "changed": True}]}, ()),
    }
    for name, (state, allow) in states.items():
        ck = Checkpoint(tmp_path, name, "k", allow=allow)
        ck.save(state)
        got = ck.load()
        assert got is not None, name
        assert got.keys() == {*state, "key"}, name
    assert Checkpoint(tmp_path, "labels", "k", allow=(steps.Cost,)).load()["cost"] == cost
