"""End to end: compose the real config, shrink it, run each experiment, check records and errors."""

from __future__ import annotations

import json

import pytest
import torch

from bench.core.errors import ConfigError
from bench.core.records import read_record
from bench.core.runner import run
from tests.conftest import CONFIGS, compose

SMALL = ["scale.speed_caches=[32]", "scale.speed_tokens=2", "scale.attn_sentences=4", "scale.attn_late_position=128",
         "scale.table1_tokens=1500", "scale.ablation_tokens=1200", "scale.long_tokens=3000",
         "scale.segment=1000", "scale.recompute_samples=8", "scale.cache_sizes=[16,32]", "eval.chunk=64"]


def _cfg(tmp_path, experiment: str, extra=()):
    return compose("streaming_llm", [f"experiment={experiment}", "profile=smoke", f"results_dir={tmp_path}",
                                     *SMALL, *extra])


@pytest.mark.parametrize("experiment,expected", [
    ("ppl_table1", ["ppl.dense", "ppl.window.0+64", "ppl.recompute.64", "ppl.streaming.4+60",
                    "ppl.newline4.4+60", "ratio.streaming_over_recompute"]),
    ("ppl_sinks", ["ppl.window.0+64", "ppl.streaming.1+63", "ppl.streaming.8+56"]),
    ("ppl_cache", ["ppl.streaming.4+12", "ppl.streaming.4+28"]),
    ("ppl_4m", ["ppl.streaming.4+60", "non_finite_nll", "kv_cache_mb.growth"]),
    ("speed", ["latency_ms.streaming.32", "latency_ms.recompute.32", "speedup.32", "peak_mem_mb.streaming.32"]),
    ("attention", ["sink_share.layer0", "sink_share.layer1", "sink_share.median_layers_ge2"]),
])
def test_experiment_writes_record(tmp_path, data_dir, experiment, expected):
    path = run("streaming_llm", _cfg(tmp_path, experiment))
    rec = read_record(path)
    assert rec["profile"] == "smoke" and rec["experiment"] == experiment
    for name in expected:
        m = rec["metrics"][name]
        assert m["value"] is not None and m["unit"] and m["direction"] in ("lower", "higher", "none")
    assert rec["env"]["packages"]["torch"].startswith("2.13")
    assert rec["config"]["model"]["name"] == "tiny_llama"
    for kind in ("tables", "csv", "figures"):
        for rel in rec["artifacts"][kind]:
            assert (path.parent / rel).stat().st_size > 0
    if experiment == "ppl_4m":
        assert rec["metrics"]["non_finite_nll"]["value"] == 0
        assert rec["metrics"]["kv_cache_mb.growth"]["value"] == 0


def test_second_run_keeps_the_first_record(tmp_path, data_dir):
    cfg = _cfg(tmp_path, "ppl_cache", ["scale.cache_sizes=[16]"])
    first = run("streaming_llm", cfg)
    created = json.loads(first.read_text())["created"]
    second = run("streaming_llm", cfg)
    history = list((second.parent / "history").glob("*/record.json"))  # the whole earlier run folder
    assert len(history) == 1 and json.loads(history[0].read_text())["created"] == created


def test_interrupted_run_resumes_with_the_same_result(tmp_path):
    from bench.core.checkpoint import Checkpoint
    from bench.streaming_llm.adapters import adapter_for
    from bench.streaming_llm.engine import CachePolicy
    from bench.streaming_llm.ppl import build_stream, evaluate
    from tests.streaming_llm.models import tiny_llama

    model = tiny_llama()
    ids = torch.randint(0, 101, (900,)).tolist()
    stream = build_stream([("a", ids[:500]), ("b", ids[500:])], None)
    pol = CachePolicy(4, 60)
    full = evaluate(adapter_for(model), pol, stream, 64)
    ck = Checkpoint(tmp_path, "run", "k1")
    part = evaluate(adapter_for(model), pol, stream, 64, checkpoint=ck, checkpoint_every_s=0, stop_after_chunks=5)
    assert torch.isnan(part).any()  # interrupted
    resumed = evaluate(adapter_for(model), pol, stream, 64, checkpoint=ck)
    assert torch.equal(resumed, full)
    # A checkpoint of other settings is never mixed in.
    other = evaluate(adapter_for(model), CachePolicy(4, 60), stream, 64, checkpoint=Checkpoint(tmp_path, "run", "k2"))
    assert torch.equal(other, full)


def test_books_are_scored_separately_and_the_cache_carries_over():
    from bench.streaming_llm.ppl import build_stream

    s = build_stream([("a", [1, 2, 3]), ("b", [4, 5, 6, 7])], None)
    assert s.inputs.tolist() == [1, 2, 4, 5, 6] and s.targets.tolist() == [2, 3, 5, 6, 7]
    assert s.doc_starts == [0, 2]
    assert build_stream([("a", [1, 2, 3]), ("b", [4, 5, 6, 7])], 3).targets.tolist() == [2, 3, 5]


@pytest.mark.parametrize("overrides,setting", [
    (["experiment=ppl_sinks", "scale.sink_counts=[64]"], "scale.sink_counts"),  # S >= cache (the key the user set)
    (["experiment=ppl_cache", "scale.cache_sizes=[1024]"], "experiment.cache_sizes"),  # > context 512
    (["experiment=ppl_table1", "experiment.allow_beyond_context=false", "scale.table1_tokens=1500",
      "model.context=256"], "experiment.allow_beyond_context"),
    (["experiment=ppl_4m", "scale.long_tokens=100000000", "data=text_dir", "data.subdir=one_book"],
     "scale"),  # more tokens than the data has
])
def test_bad_settings_name_the_setting(tmp_path, data_dir, overrides, setting):
    (tmp_path / "one_book").mkdir()
    (tmp_path / "one_book" / "b.txt").write_text((data_dir / "gutenberg" / "modest_proposal.txt").read_text())
    for sub in ("tinyshakespeare", "gutenberg"):
        (tmp_path / sub).symlink_to(data_dir / sub)
    cfg = compose("streaming_llm", ["profile=smoke", f"results_dir={tmp_path}", "eval.chunk=64",
                                    f"data_dir={tmp_path}", "scale.recompute_samples=4", *overrides])
    with pytest.raises(ConfigError) as e:
        run("streaming_llm", cfg)
    assert e.value.setting == setting


def test_missing_or_empty_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    cfg = compose("streaming_llm", ["profile=smoke", "model=smollm2_135m", f"results_dir={tmp_path}", "data_dir=null"])
    with pytest.raises(ConfigError, match="no data directory"):
        run("streaming_llm", cfg)
    (tmp_path / "books").mkdir()
    cfg = compose("streaming_llm", ["profile=smoke", "model=smollm2_135m", f"results_dir={tmp_path}",
                                    f"data_dir={tmp_path}", "data=text_dir", "data.subdir=books"])
    with pytest.raises(ConfigError, match="no .txt files") as e:
        run("streaming_llm", cfg)
    assert e.value.setting == "data.subdir"
    cfg = compose("streaming_llm", ["profile=smoke", f"results_dir={tmp_path}", f"data_dir={tmp_path}/nope"])
    with pytest.raises(ConfigError, match="does not exist"):
        run("streaming_llm", cfg)


def test_unknown_experiment_and_unreachable_model(tmp_path, monkeypatch):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException):  # Hydra lists the available experiments
        compose("streaming_llm", ["experiment=no_such_thing"])
    cfg = compose("streaming_llm", ["profile=smoke", f"results_dir={tmp_path}"])
    cfg.experiment.name = "no_such_thing"
    # the runner lists the registered experiments, which are exactly the experiment config files
    from bench.core.runner import experiments

    files = sorted(p.stem for p in (CONFIGS / "streaming_llm" / "experiment").glob("*.yaml"))
    assert experiments("streaming_llm") == files
    with pytest.raises(ConfigError, match="available: " + ", ".join(files)):
        run("streaming_llm", cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose("streaming_llm", ["profile=paper", "device=cpu", f"results_dir={tmp_path}", "data=gutenberg"])
    with pytest.raises(ConfigError, match="no access to the model hub") as e:
        run("streaming_llm", cfg)
    assert e.value.setting == "model"


def test_entry_point_prints_one_clear_error(tmp_path, data_dir):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "reproduce.streaming_llm", "profile=smoke",
                          "experiment=ppl_sinks", "scale.sink_counts=[64]", f"results_dir={tmp_path}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "setting to fix: `scale.sink_counts`" in out.stderr  # the key the user set
