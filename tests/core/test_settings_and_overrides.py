"""The experiment contract's two checks: `core/experiment.settings_for` (an experiment's settings for one
run: schema default < YAML < profile block < command line; unknown keys, wrong types, ranges and rules
refused naming `experiment.<key>`, in every profile block) and `core/overrides.prepare` (the command line
checked before Hydra composes, with a did-you-mean).

A small paper `demo` is written into a temporary folder and found through `BENCH_PAPERS_PATH`, so these
tests do not move when a real paper's settings do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting, settings_for, spec_of
from llm_efficiency_bench.core.overrides import check_group_choices, prepare
from llm_efficiency_bench.core.validate import ListOf, MapOf, Num, Rule, nonneg_int, pos_int


@dataclass
class DemoSettings:
    """A schema with an int, a float, a list and a mapping."""

    cache: int = setting(1024, pos_int(hi=1 << 20), "tokens in the cache")
    n_sink: int = setting(4, nonneg_int(hi=64), "sink tokens at the start of the cache")
    sizes: list[int] = setting([16, 32], ListOf(pos_int()), "cache sizes of a sweep")
    rate: float = setting(0.5, Num(float, 0, 1), "a fraction")
    arch: dict[str, int] = setting({"heads": 2, "hidden": 32}, MapOf(pos_int()), "a small architecture")


DEMO_RULES = [
    Rule(("n_sink", "cache"), lambda s, c: s < c, "n_sink {0} must be below the cache {1}", "n_sink"),
    Rule(("cache", "/demo.limit"), lambda c, lim: c <= lim, "cache {0} exceeds demo.limit {1}", "cache"),
]


@experiment(settings=DemoSettings, rules=DEMO_RULES)
def demo(ctx) -> None:
    """An experiment with settings (never run here)."""


def no_settings(ctx) -> None:
    """An experiment that declares no settings."""


SPEC = spec_of(demo)
DEFAULTS = {"cache": 1024, "n_sink": 4, "sizes": [16, 32], "rate": 0.5, "arch": {"heads": 2, "hidden": 32}}
CONTEXT = {"demo": {"limit": 1 << 20}}


def _settings(exp: dict, profile: str = "smoke", overrides=(), context=CONTEXT) -> dict:
    return settings_for(SPEC, {"name": "demo", "fn": f"{__name__}:demo", **exp}, profile, overrides,
                        source="demo.yaml", context=context)


# --------------------------------------------------------------------------------------------- settings_for
def test_the_schema_defaults_fill_what_nothing_sets():
    assert _settings({}) == DEFAULTS
    assert _settings({"profiles": {"smoke": None, "cpu": {}}}) == DEFAULTS


def test_command_line_beats_profile_beats_yaml_beats_default():
    # what Hydra composed: the YAML's cache/n_sink/rate, with `experiment.rate=0.75` from the command line applied
    exp = {"cache": 512, "n_sink": 2, "rate": 0.75,
           "profiles": {"smoke": {"cache": 64, "rate": 0.1}, "paper": {"cache": 4096}}}
    got = _settings(exp, "smoke", ["experiment.rate=0.75"])
    assert (got["cache"], got["n_sink"], got["rate"], got["sizes"]) == (64, 2, 0.75, [16, 32])
    assert _settings(exp, "paper", ["experiment.rate=0.75"])["cache"] == 4096
    assert _settings(exp, "cpu", ["experiment.rate=0.75"])["cache"] == 512  # no block: the YAML's value


def test_a_nested_setting_from_the_command_line_keeps_the_profiles_other_entries():
    exp = {"arch": {"heads": 8}, "profiles": {"smoke": {"arch": {"heads": 1, "hidden": 64}}}}
    assert _settings(exp, "smoke", ["++experiment.arch.heads=8"])["arch"] == {"heads": 8, "hidden": 64}


def test_an_integral_float_is_the_whole_number_it_names():
    assert _settings({"cache": 1e3})["cache"] == 1000
    with pytest.raises(ConfigError, match="experiment.cache has the wrong type") as e:
        _settings({"cache": 7.5})
    assert e.value.setting == "experiment.cache"


@pytest.mark.parametrize("exp,setting,text", [
    ({"cahce": 64}, "experiment.cahce", "did you mean `cache`?"),
    ({"cache": "abc"}, "experiment.cache", "wrong type (got 'abc'"),
    ({"sizes": 5}, "experiment.sizes", "wrong type"),
    ({"arch": []}, "experiment.arch", "wrong type (got []"),
    ({"sizes": [16, 7.5]}, "experiment.sizes", "wrong type (got [16, 7.5]"),
    ({"cache": 0}, "experiment.cache", "must be in [1, "),
    ({"rate": 1.5}, "experiment.rate", "must be in [0, 1]"),
    ({"sizes": []}, "experiment.sizes", "at least 1 value"),
    ({"arch": {"heads": 0}}, "experiment.arch", "entry 'heads'"),
    ({"n_sink": 64, "cache": 64}, "experiment.n_sink", "n_sink 64 must be below the cache 64"),
])
def test_bad_values_name_the_setting(exp, setting, text):
    with pytest.raises(ConfigError) as e:
        _settings(exp)
    assert e.value.setting == setting and text in str(e.value) and "\n" not in str(e.value)


def test_a_rule_reads_a_key_of_the_whole_config():
    with pytest.raises(ConfigError, match="cache 1024 exceeds demo.limit 100") as e:
        _settings({}, context={"demo": {"limit": 100}})
    assert e.value.setting == "experiment.cache"


@pytest.mark.parametrize("block,setting,text", [
    ({"cahce": 4096}, "experiment.cahce", "did you mean `cache`?"),
    ({"cache": -1}, "experiment.cache", "must be in [1, "),
    ({"rate": "high"}, "experiment.rate", "wrong type"),
])
def test_a_mistake_in_a_profile_block_not_in_use_fails_every_run(block, setting, text):
    with pytest.raises(ConfigError) as e:
        _settings({"profiles": {"smoke": {"cache": 64}, "paper": block}}, "smoke")
    assert e.value.setting == setting and text in str(e.value) and "(profiles.paper in demo.yaml)" in str(e.value)


def test_a_command_line_value_is_judged_for_the_run_and_never_blamed_on_another_block():
    exp = {"cache": 6, "profiles": {"smoke": {"sizes": [8]}, "paper": {"n_sink": 8}}}
    assert _settings(exp, "smoke", ["experiment.cache=6"])["cache"] == 6  # paper's n_sink 8 < its own cache
    with pytest.raises(ConfigError) as e:
        _settings({**exp, "cache": 0}, "smoke", ["experiment.cache=0"])
    assert e.value.setting == "experiment.cache" and "profiles." not in str(e.value)


def test_a_rule_that_cannot_be_evaluated_fails_naming_its_setting():
    """A value the rule cannot compute with (an infinite size to round, a zero to divide by) fails the rule."""
    def squares(ctx) -> None:
        """An experiment whose rules compute with config values."""

    spec = spec_of(experiment(settings=DemoSettings, rules=[
        Rule(("cache", "/demo.side"), lambda c, side: c <= int(side) ** 2, "cache {0} exceeds {1}^2", "cache"),
        Rule(("cache", "/demo.step"), lambda c, step: c % step == 0, "cache {0} is no multiple of {1}", "cache"),
    ])(squares))
    for context in ({"demo": {"side": float("inf"), "step": 1}}, {"demo": {"side": 64, "step": 0}}):
        with pytest.raises(ConfigError) as e:
            settings_for(spec, {"name": "x", "fn": "m:f"}, "smoke", context=context)
        assert e.value.setting == "experiment.cache"


def test_an_experiment_without_a_schema_refuses_settings():
    spec = spec_of(no_settings)
    assert settings_for(spec, {"name": "x", "fn": "m:f", "profiles": {"smoke": {}}}, "smoke") == {}
    with pytest.raises(ConfigError, match="declares no settings") as e:
        settings_for(spec, {"name": "x", "fn": "m:f", "profiles": {"smoke": {"cache": 1}}}, "smoke")
    assert e.value.setting == "experiment.cache"
    with pytest.raises(ConfigError, match="must map profile names") as e:
        _settings({"profiles": [1, 2]})


# -------------------------------------------------------------------------------------------------- prepare
@pytest.fixture
def demo_paper(tmp_path, monkeypatch) -> Path:
    """A paper `demo` beside the suite: configs/demo.yaml, configs/demo/{experiment,profile}/, found through
    BENCH_PAPERS_PATH. Returns its config folder."""
    configs = tmp_path / "configs"
    (configs / "demo" / "experiment").mkdir(parents=True)
    (configs / "demo" / "profile").mkdir()
    (configs / "demo.yaml").write_text(
        "defaults:\n  - _self_\n  - profile: cpu\n  - experiment: one\n"
        "paper: demo\ndemo: {limit: 100000, label: x}\nseed: 0\n"
        f"hydra:\n  searchpath:\n    - file://{configs / 'demo'}\n")
    for name in ("cpu", "smoke"):
        (configs / "demo" / "profile" / f"{name}.yaml").write_text(f"# @package _global_\nprofile: {{name: {name}}}\n")
    (configs / "demo" / "experiment" / "one.yaml").write_text(
        f"# @package _global_\nexperiment:\n  name: one\n  fn: {__name__}:demo\n  cache: 512\n"
        "  profiles:\n    smoke: {cache: 64, rate: 0.25}\n")
    (configs / "demo" / "experiment" / "two.yaml").write_text(
        f"# @package _global_\nexperiment:\n  name: two\n  fn: {__name__}:no_settings\n")
    monkeypatch.setenv("BENCH_PAPERS_PATH", str(tmp_path))
    return configs


def test_prepare_passes_a_setting_the_yaml_lists_and_adds_one_it_leaves_at_its_default(demo_paper):
    assert prepare("demo", ["experiment.cache=8"], demo_paper) == ["experiment.cache=8"]
    assert prepare("demo", ["experiment.rate=0.1"], demo_paper) == ["++experiment.rate=0.1"]
    assert prepare("demo", ["experiment.arch.heads=4"], demo_paper) == ["++experiment.arch.heads=4"]
    passed = ["+extra.key=1", "~demo.label", "hydra.verbose=true", "experiment.name=x", "demo.limit=3", "--cfg"]
    assert prepare("demo", passed, demo_paper) == passed


@pytest.mark.parametrize("overrides,setting,text", [
    (["experiment.cahce=8"], "experiment.cahce", "experiment 'one' has no setting 'cahce'; did you mean `cache`?"),
    (["experiment=two", "experiment.cache=8"], "experiment.cache", "experiment 'two' has no setting 'cache'"),
    (["experiment=one,two", "experiment.cache=8"], "experiment.cache", "experiment 'two' has no setting"),
    (["demo.limt=3"], "demo.limt", "unknown setting 'demo.limt'; did you mean `demo.limit`?"),
    (["nope=3"], "nope", "unknown setting 'nope'"),
    (["profile=smok"], "profile", "unknown profile 'smok' for demo; did you mean `smoke`?; available: cpu, smoke"),
    (["experiment=3"], "experiment", "unknown experiment '3'"),
    (["profile=cpu,nope"], "profile", "unknown profile 'nope'"),
])
def test_prepare_refuses_with_one_line_and_the_closest_name(demo_paper, overrides, setting, text):
    with pytest.raises(ConfigError) as e:
        prepare("demo", overrides, demo_paper)
    assert e.value.setting == setting and text in str(e.value) and "\n" not in str(e.value)


def test_group_choices_leave_sweep_functions_to_hydra(demo_paper):
    check_group_choices("demo", ["profile=choice(cpu,smoke)", "profile=cpu,smoke", "~profile"], demo_paper)


def test_compose_applies_the_order_end_to_end(demo_paper):
    """Through Hydra, as the entry point composes: default < YAML < profile < command line."""
    from tests.conftest import compose

    cfg = compose("demo", ["profile=smoke"])
    assert (cfg.experiment.cache, cfg.experiment.rate, cfg.experiment.n_sink) == (64, 0.25, 4)
    cfg = compose("demo", ["profile=smoke", "experiment.cache=128", "experiment.n_sink=2"])
    assert (cfg.experiment.cache, cfg.experiment.rate, cfg.experiment.n_sink) == (128, 0.25, 2)
    assert compose("demo", ["profile=cpu"]).experiment.cache == 512
    assert "profiles" not in compose("demo", []).experiment
    with pytest.raises(ConfigError, match="cache 512 exceeds demo.limit 100"):
        compose("demo", ["demo.limit=100"])
