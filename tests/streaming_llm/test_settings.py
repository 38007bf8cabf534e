"""StreamingLLM's experiment settings: declared beside each function, sized per profile in its YAML, checked
at composition (`core/experiment.py`), in the order `make reproduce` runs them."""

from __future__ import annotations

import pytest

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import declared, settings_for
from tests.conftest import CONFIGS, compose

pytestmark = pytest.mark.e2e  # composes every experiment on every profile

EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "streaming_llm" / "experiment").glob("*.yaml"))
PROFILES = ("smoke", "cpu", "gpu", "paper")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_composes_on_every_profile(tmp_path, profile):
    for name in EXPERIMENTS:
        cfg = compose("streaming_llm", [f"experiment={name}", f"profile={profile}", f"results_dir={tmp_path}"])
        assert cfg.experiment.name == name and cfg.experiment.specialised
        assert "profiles" not in cfg.experiment and "scale" not in cfg  # sizes live in the experiment YAMLs


def test_every_experiment_declares_valid_defaults_and_a_drawer():
    """The schema's defaults (the paper's sizes) pass their own ranges and rules; every experiment but
    eval_speed (a table only) declares the drawer the runner and the report call."""
    import llm_efficiency_bench.streaming_llm.settings as paper_settings

    assert not hasattr(paper_settings, "EXPERIMENTS")
    for name in EXPERIMENTS:
        spec = declared("streaming_llm", name)
        assert spec is not None and spec.settings is not None, name
        settings_for(spec, {}, "paper")
        assert (spec.figures is None) == (name == "eval_speed"), name


def test_smoke_sizes_and_paper_defaults():
    smoke = compose("streaming_llm", ["experiment=ppl_table1", "profile=smoke"]).experiment
    assert (smoke.cache, smoke.max_tokens, smoke.recompute_samples, smoke.n_sink) == (64, 3000, 32, 4)
    cpu = compose("streaming_llm", ["experiment=ppl_table1", "profile=cpu"]).experiment
    assert (cpu.cache, cpu.max_tokens, cpu.recompute_samples, cpu.dtype_check_tokens) == (1024, None, 2048, 16384)
    paper = compose("streaming_llm", ["experiment=ppl_table1", "profile=paper"]).experiment
    assert (paper.max_tokens, paper.recompute_samples) == (65536, None)  # every position, exact


def test_the_sizes_are_those_of_the_profile_composed():
    """`make gpu-check` renames the results folder (`profile.name=gpu_<device>`); the sizes stay the gpu ones."""
    cfg = compose("streaming_llm", ["experiment=speed", "profile=gpu", "profile.name=gpu_h200"])
    assert cfg.profile.name == "gpu_h200" and cfg.experiment.tokens == 10
    assert compose("streaming_llm", ["experiment=speed", "profile=paper"]).experiment.tokens == 20
    # eval_speed's chunk is the evaluator's (eval.chunk) of the profile, or of the command line
    assert compose("streaming_llm", ["experiment=eval_speed", "profile=smoke"]).eval.chunk == 128
    assert compose("streaming_llm", ["experiment=eval_speed", "profile=smoke", "eval.chunk=64"]).eval.chunk == 64


def test_an_override_concerns_the_run_profile_only():
    cfg = compose("streaming_llm", ["experiment=speed", "profile=cpu", "experiment.n_sink=40"])
    assert cfg.experiment.n_sink == 40 and min(cfg.experiment.cache_sizes) == 256
    with pytest.raises(ConfigError, match="profiles.smoke") as e:  # the smoke caches (32 ...) cannot hold 40 sinks
        compose("streaming_llm", ["experiment=speed", "profile=smoke", "experiment.n_sink=40"])
    assert e.value.setting == "experiment.cache_sizes"


def test_a_group_override_keeps_the_rest_of_the_profile_group():
    cfg = compose("streaming_llm", ["experiment=sink_pretrain", "profile=smoke", "experiment.train.steps=1e3"])
    train = dict(cfg.experiment.train)
    assert train == {"steps": 1000, "batch": 4, "seq_len": 64, "lr": 0.002, "warmup": 2, "weight_decay": 0.1,
                     "seed": 0}
    assert isinstance(train["steps"], int)
    assert cfg.experiment.arch.hidden == 32
    # the record's model label describes the models the run trains
    assert cfg.model.name == "tiny_llama_sink_pretrain" and cfg.model.context == 64 and cfg.model.train.steps == 1000


def test_make_reproduce_runs_the_papers_order():
    from llm_efficiency_bench.cli.listing import run_order

    assert run_order("streaming_llm") == ["ppl_table1", "ppl_sinks", "ppl_cache", "speed", "attention",
                                          "sink_pretrain", "chat", "stream_qa", "stream_eval", "ppl_4m"]
