"""End to end: compose the real config, shrink it, run each experiment, check records and errors."""

from __future__ import annotations

import json

import pytest
import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.records import read_record
from llm_efficiency_bench.core.runner import run
from tests.conftest import compose

SMALL = {  # each experiment's smoke sizes, shrunk further
    "speed": ["experiment.cache_sizes=[32]", "experiment.tokens=2"],
    "attention": ["experiment.sentences=4", "experiment.late_position=128"],
    "ppl_table1": ["experiment.max_tokens=1500", "experiment.recompute_samples=8"],
    "ppl_sinks": ["experiment.max_tokens=1200"],
    "ppl_cache": ["experiment.max_tokens=1200", "experiment.cache_sizes=[16,32]"],
    "ppl_4m": ["experiment.max_tokens=3000", "experiment.segment=1000", "experiment.max_book_tokens=250",
               "experiment.fresh_tokens=200"],
}


def _cfg(tmp_path, experiment: str, extra=()):
    return compose("streaming_llm", [f"experiment={experiment}", "profile=smoke", f"results_dir={tmp_path}",
                                     "eval.chunk=64", *SMALL[experiment], *extra])


@pytest.mark.e2e
@pytest.mark.parametrize("experiment,expected", [
    ("ppl_table1", ["ppl.dense", "ppl.window.0+64", "ppl.recompute.64", "ppl.streaming.4+60",
                    "ppl.newline4.4+60", "ratio.streaming_over_recompute"]),
    ("ppl_sinks", ["ppl.window.0+64", "ppl.streaming.1+63", "ppl.streaming.8+56"]),
    ("ppl_cache", ["ppl.streaming.4+12", "ppl.streaming.4+28"]),
    ("ppl_4m", ["ppl.streaming.4+60", "non_finite_nll", "kv_cache_mb.growth", "ppl_ratio.median", "ppl_ratio.max",
                "ppl_ratio.slope_per_1m", "ppl_ratio.slope_z", "ppl_ratio.drift_upper_2se",
                "ppl.in_stream.a_dolls_house", "ppl.fresh.a_dolls_house", "ppl_ratio.a_dolls_house"]),
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


@pytest.mark.e2e
def test_second_run_keeps_the_first_record(tmp_path, data_dir):
    cfg = _cfg(tmp_path, "ppl_cache", ["experiment.cache_sizes=[16]"])
    first = run("streaming_llm", cfg)
    created = json.loads(first.read_text())["created"]
    second = run("streaming_llm", cfg)
    history = list((second.parent / "history").glob("*/record.json"))  # the whole earlier run folder
    assert len(history) == 1 and json.loads(history[0].read_text())["created"] == created


def test_interrupted_run_resumes_with_the_same_result(tmp_path):
    from llm_efficiency_bench.core.checkpoint import Checkpoint
    from llm_efficiency_bench.streaming_llm.adapters import adapter_for
    from llm_efficiency_bench.streaming_llm.engine import CachePolicy
    from llm_efficiency_bench.streaming_llm.ppl import build_stream, evaluate
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
    from llm_efficiency_bench.streaming_llm.ppl import build_stream

    s = build_stream([("a", [1, 2, 3]), ("b", [4, 5, 6, 7])], None)
    assert s.inputs.tolist() == [1, 2, 4, 5, 6] and s.targets.tolist() == [2, 3, 5, 6, 7]
    assert s.doc_starts == [0, 2]
    assert build_stream([("a", [1, 2, 3]), ("b", [4, 5, 6, 7])], 3).targets.tolist() == [2, 3, 5]


@pytest.mark.parametrize("overrides,setting", [
    (["experiment=ppl_sinks", "experiment.sink_counts=[64]"], "experiment.sink_counts"),  # S >= cache 64
    (["experiment=ppl_cache", "experiment.n_sink=16"], "experiment.cache_sizes"),  # a cache of 16 holds no recent token
    (["experiment=ppl_4m", "experiment.fresh_books=2"], "experiment.fresh_books"),  # the control + at least 2
    (["experiment=ppl_table1", "experiment.recompute_samples=1"], "experiment.recompute_samples"),  # no stderr
    (["experiment=eval_speed", "experiment.tokens=2100"], "experiment.tokens"),  # not past the 2048 cache + a chunk
    (["experiment=sink_pretrain", "experiment.train.seq_len=16"], "experiment.cache"),  # cache 32 > context 16
    (["experiment=sink_pretrain", "experiment.arch.heads=3"], "experiment.arch.heads"),  # hidden 32 % 3
    (["experiment=sink_pretrain", "experiment.arch.layers=0"], "experiment.arch.layers"),
    (["experiment=sink_pretrain", "experiment.arch.layer=2"], "experiment.arch.layer"),
    (["experiment=stream_eval", "experiment.dev_seed=0"], "experiment.dev_seed"),  # the test stream's seed
    (["experiment=stream_qa", "experiment.policies=[window,streaming]"], "experiment.policies"),  # no one_shot
    (["experiment=chat", "experiment.n_sink=64"], "experiment.n_sink"),  # S = the whole cache of 64
])
def test_settings_the_schema_refuses_fail_before_the_run(tmp_path, overrides, setting):
    """Ranges and rules of each experiment's settings (`@experiment`) fail at composition: nothing is built."""
    with pytest.raises(ConfigError) as e:
        compose("streaming_llm", ["profile=smoke", f"results_dir={tmp_path}", *overrides])
    assert e.value.setting == setting
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("overrides,setting", [
    (["experiment=ppl_cache", "experiment.cache_sizes=[1024]"], "experiment.cache_sizes"),  # > context 512
    (["experiment=ppl_table1", "experiment.allow_beyond_context=false", "experiment.max_tokens=1500",
      "experiment.recompute_samples=4", "model.context=256"], "experiment.allow_beyond_context"),
    (["experiment=ppl_4m", "experiment.max_tokens=100000000", "data=text_dir", "data.subdir=one_book"],
     "experiment.max_tokens"),  # more tokens than the data has
    pytest.param(["experiment=ppl_4m", "experiment.fresh_tokens=5000"], "experiment.fresh_tokens",  # > a smoke book
                 marks=pytest.mark.e2e),  # found only once the books are read and tokenized (seconds)
])
def test_settings_the_model_or_data_refuse_name_the_setting(tmp_path, data_dir, overrides, setting):
    (tmp_path / "one_book").mkdir()
    (tmp_path / "one_book" / "b.txt").write_text((data_dir / "gutenberg" / "modest_proposal.txt").read_text())
    for sub in ("tinyshakespeare", "gutenberg"):
        (tmp_path / sub).symlink_to(data_dir / sub)
    cfg = compose("streaming_llm", ["profile=smoke", f"results_dir={tmp_path}", "eval.chunk=64",
                                    f"data_dir={tmp_path}", *overrides])
    with pytest.raises(ConfigError) as e:
        run("streaming_llm", cfg)
    assert e.value.setting == setting


@pytest.mark.e2e
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
    with pytest.raises(ConfigError, match="available: attention, chat") as e:  # the experiments are listed
        compose("streaming_llm", ["experiment=no_such_thing"])
    assert e.value.setting == "experiment"
    cfg = compose("streaming_llm", ["profile=smoke", f"results_dir={tmp_path}"])
    cfg.experiment.fn = "llm_efficiency_bench.streaming_llm.experiments:no_such_thing"
    with pytest.raises(ConfigError, match="no function 'no_such_thing'") as e:
        run("streaming_llm", cfg)
    assert e.value.setting == "experiment.fn"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose("streaming_llm", ["profile=paper", "device=cpu", f"results_dir={tmp_path}", "data=gutenberg"])
    with pytest.raises(ConfigError, match="not in the local hub cache and HF_HUB_OFFLINE is set") as e:
        run("streaming_llm", cfg)
    assert e.value.setting == "model"
    assert "model.source=local +model.path=" in str(e.value)  # the hint names an override that works


@pytest.mark.e2e
def test_entry_point_prints_one_clear_error(tmp_path, data_dir):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "reproduce.streaming_llm", "profile=smoke",
                          "experiment=ppl_sinks", "experiment.sink_counts=[64]", f"results_dir={tmp_path}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "setting to fix: `experiment.sink_counts`" in out.stderr  # the key the user set


def test_fresh_book_sample_spreads_over_the_stream():
    from llm_efficiency_bench.streaming_llm.ppl import build_stream, sample_books

    docs = [(f"b{k:02d}", list(range(101))) for k in range(20)] + [("short", list(range(31)))]
    s = build_stream(docs, None)
    assert s.doc_span(3) == (300, 400) and s.book_prefix(3, 40).inputs.tolist() == list(range(40))
    picks = sample_books(s, 50, 9, seed=0)
    assert picks == sample_books(s, 50, 9, seed=0)  # seeded
    assert picks != sample_books(s, 50, 9, seed=1)
    assert len(picks) == 9 and picks[0] == 0 and picks[-1] == 19  # the short last book is not eligible
    assert picks == sorted(set(picks))
    # one pick per stratum of the 18 books between: consecutive picks are never more than 2 strata apart
    assert all(b - a <= 5 for a, b in zip(picks, picks[1:]))
    assert sample_books(s, 50, None, seed=0) == list(range(20))
    assert sample_books(s, 20, None, seed=0) == list(range(21))


def test_paired_ratio_stderr_matches_the_spread_of_the_estimate():
    """The delta-method (and bootstrap) standard error of the paired PPL ratio, with the finite-population
    correction, must match the actual spread of the estimate over repeated samples of one population."""
    from llm_efficiency_bench.streaming_llm.stats import paired_ppl_ratio

    g = torch.Generator().manual_seed(0)
    N, n = 4000, 1000
    base = torch.rand(N, generator=g) * 6  # per-position NLL, shared by both methods (cancels when paired)
    a = base + 0.3 * torch.randn(N, generator=g) ** 3  # heavy-tailed paired differences
    b = base
    truth = paired_ppl_ratio(a, b, population=N)
    assert truth.stderr_delta == 0.0 and truth.stderr_bootstrap == 0.0  # every position: exact
    ests, ses, boots = [], [], []
    for _ in range(300):
        idx = torch.randperm(N, generator=g)[:n]
        pr = paired_ppl_ratio(a[idx], b[idx], population=N, n_boot=300)
        ests.append(pr.value)
        ses.append(pr.stderr_delta)
        boots.append(pr.stderr_bootstrap)
    spread = float(torch.tensor(ests).std())
    assert abs(float(torch.tensor(ses).mean()) / spread - 1) < 0.15
    assert abs(float(torch.tensor(boots).mean()) / spread - 1) < 0.15
    # without pairing (or without the FPC) the error would be far off: the test can fail
    assert abs(float(torch.tensor(ses).mean()) / (spread / (1 - n / N) ** 0.5) - 1) > 0.1


def test_ols_trend_against_the_matrix_formula():
    from llm_efficiency_bench.streaming_llm.stats import ols_trend

    x = [0.1, 0.5, 0.9, 1.7, 2.2, 3.0, 3.6, 3.9]
    y = [1.01, 0.99, 1.02, 1.00, 1.03, 0.98, 1.01, 1.04]
    tr = ols_trend(x, y)
    X = torch.tensor([[1.0, v] for v in x], dtype=torch.float64)
    Y = torch.tensor(y, dtype=torch.float64)
    beta = torch.linalg.solve(X.T @ X, X.T @ Y)
    resid = Y - X @ beta
    cov = torch.linalg.inv(X.T @ X) * float(resid @ resid) / (len(x) - 2)
    assert abs(tr.slope - float(beta[1])) < 1e-12 and abs(tr.intercept - float(beta[0])) < 1e-12
    assert abs(tr.stderr - float(cov[1, 1]) ** 0.5) < 1e-12
    assert abs(tr.z - tr.slope / tr.stderr) < 1e-12


def test_recompute_scores_the_last_position_and_resumes(tmp_path):
    import torch.nn.functional as F

    from llm_efficiency_bench.core.checkpoint import Checkpoint
    from llm_efficiency_bench.streaming_llm.ppl import EvalTiming, build_stream, recompute_nll, recompute_positions
    from tests.streaming_llm.models import tiny_llama

    model = tiny_llama()
    stream = build_stream([("a", torch.randint(0, 101, (300,), generator=torch.Generator().manual_seed(1)).tolist())],
                          None)
    L = 32
    pos = recompute_positions(stream.inputs.numel(), L, None, seed=0)
    assert pos.tolist() == list(range(L - 1, stream.inputs.numel()))  # every position with a full window
    assert recompute_positions(stream.inputs.numel(), L, 40, 0).tolist() == \
        recompute_positions(stream.inputs.numel(), L, 40, 0).tolist()
    pos = pos[::9]
    got = recompute_nll(model, stream, L, pos, batch=4)
    with torch.no_grad():  # reference: the full forward of each window, all logits, last row scored
        ref = torch.stack([F.cross_entropy(model(input_ids=stream.inputs[p - L + 1:p + 1][None]).logits[0, -1],
                                           stream.targets[p]) for p in pos.tolist()])
    assert (got - ref).abs().max() < 1e-5
    ck = Checkpoint(tmp_path, "rc", "k")
    part = recompute_nll(model, stream, L, pos, batch=4, checkpoint=ck, checkpoint_every_s=0, stop_after_batches=2)
    assert torch.isnan(part).sum() == pos.numel() - 8
    t = EvalTiming()
    resumed = recompute_nll(model, stream, L, pos, batch=4, checkpoint=ck, timing=t)
    assert torch.equal(resumed, got) and t.earlier_s > 0 and t.total_s > t.leg_s


@pytest.mark.e2e
def test_ppl_table1_recomputes_every_position_when_asked(tmp_path, data_dir):
    """The paper profile's path (recompute_samples: null): every full-window position, exact ratio."""
    cfg = _cfg(tmp_path, "ppl_table1", ["experiment.max_tokens=300", "experiment.recompute_samples=null",
                                        "eval.recompute_batch=16"])
    rec = read_record(run("streaming_llm", cfg))
    m = rec["metrics"]
    assert m["recompute.positions"]["value"] == 300 - 64 + 1
    assert m["ratio.streaming_over_recompute"].get("stderr") is None
    assert m["ratio.streaming_over_recompute.upper_2se"]["value"] == m["ratio.streaming_over_recompute"]["value"]
    assert "exact" in m["ppl.recompute.64"]["note"]
    ratio = m["ppl.streaming_at_recompute_positions.4+60"]["value"] / m["ppl.recompute.64"]["value"]
    assert abs(ratio / m["ratio.streaming_over_recompute"]["value"] - 1) < 1e-9


@pytest.mark.e2e
def test_interrupted_ppl_4m_run_counts_every_leg(tmp_path, data_dir, monkeypatch):
    """Throughput and duration after a resume count the earlier legs: an interrupted and
    resumed run reports the same throughput as an uninterrupted one, and its duration covers both legs."""
    import time as _time

    from llm_efficiency_bench.streaming_llm import experiments

    extra = ["experiment.max_tokens=12000", "experiment.max_book_tokens=1000", "experiment.fresh_books=3",
             "eval.checkpoint_every_s=0"]
    whole = read_record(run("streaming_llm", _cfg(tmp_path / "a", "ppl_4m", extra)))
    real = experiments.evaluate

    def interrupted(*a, **kw):
        if kw.get("desc", "").startswith("streaming"):
            real(*a, stop_after_chunks=150, **kw)  # 150 of 188 chunks, then the process "dies"
            raise KeyboardInterrupt
        return real(*a, **kw)

    cfg = _cfg(tmp_path / "b", "ppl_4m", extra)
    monkeypatch.setattr(experiments, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("streaming_llm", cfg)
    monkeypatch.setattr(experiments, "evaluate", real)
    ck = next((tmp_path / "b").rglob("streaming_4+60.pt"))
    earlier = torch.load(ck, weights_only=False)["elapsed_s"]
    t0 = _time.time()
    resumed = read_record(run("streaming_llm", cfg))
    leg2 = _time.time() - t0
    ratio = resumed["metrics"]["throughput"]["value"] / whole["metrics"]["throughput"]["value"]
    assert 0.4 < ratio < 2.5, ratio  # last-leg-only timing would read ~5x
    assert resumed["metrics"]["stream_seconds"]["value"] >= earlier
    assert earlier <= resumed["duration_s"] <= earlier + leg2 + 0.2
    assert resumed["duration_s"] >= resumed["metrics"]["stream_seconds"]["value"] + \
        resumed["metrics"]["fresh_seconds"]["value"] - 0.2
