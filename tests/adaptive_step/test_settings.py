"""AdaptiveStep's settings: the pipeline's sizes per profile, each experiment's own settings beside it.

The pipeline's sizes (`policy.*`, `samples.*`, `labels.*`, `pipeline.max_new` / `pipeline.batch`,
`select.more_questions`) are paper-wide and set by the profile; Best-of-N sizes, TVD questions and lm-eval
policies are settings of their experiments (`profiles:` blocks of the experiment YAMLs). Every bad value is
refused before a run with one line naming the setting.
"""

from __future__ import annotations

import pytest

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.validate import validate
from tests.conftest import compose

pytestmark = pytest.mark.e2e  # composes every experiment on every profile

EXPERIMENTS = ("cost", "bon", "tvd", "greedy", "bon_released")


def test_make_reproduce_runs_the_experiments_in_their_yaml_order():
    from llm_efficiency_bench.cli.listing import run_order

    assert run_order("adaptive_step") == ["cost", "bon", "tvd", "greedy", "bon_released"]


def test_each_experiment_declares_its_settings_and_figures():
    from llm_efficiency_bench.adaptive_step import figures
    from llm_efficiency_bench.core.experiment import declared

    specs = {e: declared("adaptive_step", e) for e in EXPERIMENTS}
    assert all(s is not None and s.settings is not None for s in specs.values())
    drawers = {e: s.figures for e, s in specs.items()}
    assert drawers == {"cost": figures.draw_cost, "bon": figures.draw_bon, "tvd": None, "greedy": None,
                       "bon_released": figures.draw_bon}


@pytest.mark.parametrize(("exp", "profile", "want"), [
    ("bon", "smoke", {"n": [1, 2, 4, 8, 16], "seeds": 3}),
    ("bon", "cpu", {"n": [1, 2, 4, 8, 16, 32, 64], "seeds": 5}),
    ("bon", "cpu_code", {"n": [1, 2, 4, 8], "seeds": 3}),
    ("bon_released", "paper", {"n": [1, 2, 4, 8, 16, 32, 64], "seeds": 3}),  # the defaults: the paper's
    ("tvd", "cpu", {"questions": 100, "prm": "confidence"}),
    ("tvd", "smoke", {"questions": 10}),
    ("cost", "cpu_code", {"splits": ["confidence", "newline", "random"]}),
    ("greedy", "smoke", {"batch": 16}),
])
def test_profile_blocks_size_the_experiments(exp, profile, want):
    cfg = compose("adaptive_step", [f"experiment={exp}", f"profile={profile}"])
    got = {k: cfg.experiment[k] for k in want}
    assert {k: list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for k, v in got.items()} == want


def test_pipeline_sizes_come_from_the_profile():
    from llm_efficiency_bench.adaptive_step import stage_settings as S

    smoke = compose("adaptive_step", ["experiment=cost", "profile=smoke"])
    assert (S.greedy_eval_questions(smoke), S.n_questions(smoke, "prm"), S.n_samples(smoke, "prm"),
            S.n_questions(smoke, "test"), S.n_samples(smoke, "test"), S.n_questions(smoke, "val"),
            S.n_samples(smoke, "val"), S.max_new(smoke), S.batch(smoke)) == (40, 20, 8, 30, 16, 10, 16, 56, 128)
    assert S.labels_inputs(smoke, "d", "newline").K == 4 and smoke.select.more_questions == 40
    code = compose("adaptive_step", ["experiment=cost", "profile=cpu_code"])
    assert (S.n_questions(code, "val"), S.n_samples(code, "val")) == (0, 0)  # no validation split there
    over = compose("adaptive_step", ["experiment=cost", "profile=smoke", "samples.prm_questions=7"])
    assert S.samples_inputs(over, "p", "prm").n_q == 7


def test_an_override_of_an_experiment_setting_beats_the_profile_and_the_pool_rule_reads_the_run():
    # the cpu block's N reaches 64; with a pool of 8 and N given on the command line the run is consistent
    cfg = compose("adaptive_step", ["experiment=bon", "profile=cpu", "samples.test_samples=8", "experiment.n=[1,2,8]"])
    assert list(cfg.experiment.n) == [1, 2, 8] and cfg.experiment.seeds == 5
    with pytest.raises(ConfigError, match=r"exceed the pool of 8 candidates") as e:
        compose("adaptive_step", ["experiment=bon", "profile=smoke", "samples.test_samples=8"])
    assert e.value.setting == "experiment.n" and "(profiles.smoke in configs/adaptive_step/experiment/bon.yaml)" in \
        str(e.value)
    with pytest.raises(ConfigError, match=r"exceed the 2 released candidates kept") as e:
        compose("adaptive_step", ["experiment=bon_released", "profile=paper", "released.pool=2"])
    assert e.value.setting == "experiment.n"


@pytest.mark.parametrize(("overrides", "setting", "words"), [
    (["experiment=tvd", "experiment.question=5"], "experiment.question", "did you mean `questions`"),
    (["experiment=tvd", "experiment.prm=nope"], "experiment.prm", "must be one of"),
    (["experiment=bon", "experiment.seeds=0"], "experiment.seeds", "must be"),
    (["experiment=cost", "experiment.splits=[confidence,confidence]"], "experiment.splits", "must not repeat"),
    (["experiment=greedy", "experiment.policies=[{name: x, tasks: [bench_synthetic], source: hub}]"],
     "experiment.policies", "unknown source 'hub'"),
    (["experiment=bon", "scale.rollouts=2"], "scale.rollouts", "unknown setting"),  # sizes sit in their stage's block
    (["experiment=tvd", "experiment.n=[1,2]"], "experiment.n", "has no setting 'n'"),  # bon's, not tvd's
])
def test_bad_settings_are_refused_naming_the_setting(overrides, setting, words):
    with pytest.raises(ConfigError, match=words) as e:
        compose("adaptive_step", ["profile=smoke", *overrides])
    assert e.value.setting == setting


@pytest.mark.parametrize(("override", "setting"), [
    ("labels.rollouts=-2", "labels.rollouts"), ("samples.val_questions=-1", "samples.val_questions"),
    ("pipeline.max_new=0", "pipeline.max_new"), ("policy.eval_questions=1.5", "policy.eval_questions"),
    ("select.more_questions=0", "select.more_questions"),
])
def test_bad_pipeline_sizes_are_refused_before_the_run(override, setting):
    cfg = compose("adaptive_step", ["experiment=cost", "profile=smoke", override])
    with pytest.raises(ConfigError) as e:
        validate("adaptive_step", cfg)
    assert e.value.setting == setting


def test_a_data_variant_is_checked_like_the_prm_data_sizes():
    cfg = compose("adaptive_step", ["experiment=bon", "profile=smoke",
                                    "select.variants.more_data.data.prm_questions=0"])
    with pytest.raises(ConfigError, match="data.prm_questions must be"):
        validate("adaptive_step", cfg)
