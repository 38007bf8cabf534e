"""Each cached stage reads only its inputs object, and its key is computed from exactly those inputs.

* every field of an inputs class changes the stage's (name, key) unless it is declared `unkeyed`, and the
  unkeyed fields are exactly the ones listed here (a new one is a deliberate decision, with its reason);
* the stage modules never read the run's config (`stage_settings` is the one place that does);
* a stage handed upstream results other than the ones its inputs name refuses them.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from llm_efficiency_bench.adaptive_step import stage_inputs as inputs_module
from llm_efficiency_bench.adaptive_step.stage import RunOptions
from llm_efficiency_bench.adaptive_step.stage_inputs import (DivisionInputs, LabelsInputs, PolicyInputs, PrmInputs,
                                                            SamplesInputs, ScoresInputs, TvdInputs, Validator)
from llm_efficiency_bench.core.errors import ConfigError
from tests.conftest import compose

PACKAGE = Path(__file__).resolve().parents[2] / "llm_efficiency_bench" / "adaptive_step"
STAGE_MODULES = ("policy", "samples", "labels", "prm", "tvd", "stage", "stage_inputs")
# the functions of the stage modules that take a run's config: each builds its stage's inputs through
# `stage_settings` (for callers that hold a config) and reads no setting itself
CONFIG_ENTRIES = {"train_policy", "policy_key_obj", "samples_key_obj", "division_key_obj", "labels_key_obj"}

UNKEYED = {
    PolicyInputs: {"task", "batch", "dtype", "device", "data_dir"},
    SamplesInputs: {"batch"},
    DivisionInputs: set(),
    LabelsInputs: {"batch"},
    PrmInputs: set(),
    ScoresInputs: {"batch"},
    TvdInputs: {"batch"},
}


def _validator(key: str = "val") -> Validator:
    return Validator(key, lambda model: 0.0)


EXAMPLES = {
    PolicyInputs: PolicyInputs(model={"name": "tiny", "source": "suite_trained"}, task_settings={"name": "synthetic"},
                               n_eval=8, max_new=16, task=None, batch=4, dtype="float32", device="cpu", data_dir=None),
    SamplesInputs: SamplesInputs(split="prm", policy="p", task={"name": "synthetic"}, n_q=4, n_s=2, temp=1.0,
                                 max_new=16, seed=0, batch=8),
    DivisionInputs: DivisionInputs(samples=("a", "b"), pct=2.0, seed=0),
    LabelsInputs: LabelsInputs(split="confidence", division="d", K=2, max_new=16, temp=1.0, seed=0, batch=8),
    # early_stop on, so the validator takes part in the key
    PrmInputs: PrmInputs(name="confidence", policy="p", labels="l", validator=_validator(),
                         recipe={"lr": 1e-3, "loss": "vocab", "epochs": 1, "batch": 4, "seed": 0, "labels": "hard",
                                 "early_stop": True}),
    ScoresInputs: ScoresInputs(prm="m", samples="s", orm=False, bounds=[[1, 2], [3]], batch=8),
    TvdInputs: TvdInputs(policy="p", prm="m", n=2, thr=0.5, k=4, max_new=16, task={"name": "synthetic"}, batch=8),
}


def _other(value):
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, dict):
        return {**value, "probe": 1}
    if isinstance(value, Validator):
        return _validator(value.key + "x")
    if isinstance(value, (list, tuple)):
        return type(value)([*value, [7]] if value and isinstance(value[0], list) else [*value, "x"])
    return "changed"


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_every_keyed_field_reaches_the_key_and_only_declared_fields_are_unkeyed(cls):
    base = EXAMPLES[cls]
    assert set(cls.unkeyed_fields()) == UNKEYED[cls]
    assert all(why.strip() for why in cls.unkeyed_fields().values())
    ident = (base.entry_name(), base.key())
    for f in dataclasses.fields(cls):
        changed = dataclasses.replace(base, **{f.name: _other(getattr(base, f.name))})
        moved = (changed.entry_name(), changed.key()) != ident
        assert moved == (f.name not in UNKEYED[cls]), f"{cls.__name__}.{f.name}"


def test_prm_key_leaves_out_neutral_settings_and_needs_a_validator_for_early_stopping():
    plain = {"lr": 1e-3, "loss": "vocab", "epochs": 1, "batch": 4, "seed": 0}
    a = PrmInputs(name="newline", policy="p", labels="l", recipe=plain)
    b = PrmInputs(name="newline", policy="p", labels="l", recipe={**plain, "labels": "hard", "early_stop": False},
                  validator=_validator())  # not early stopping: the validator is not used, so not keyed
    assert a.key() == b.key() and "validation" not in b.key_obj()
    assert PrmInputs(name="newline", policy="p", labels="l", recipe={**plain, "labels": "soft"}).key() != a.key()
    with pytest.raises(ConfigError, match="prm.early_stop"):
        PrmInputs(name="newline", policy="p", labels="l", recipe={**plain, "early_stop": True})


def test_result_keys_of_division_and_labels():
    from llm_efficiency_bench.core.cache import config_key

    div = EXAMPLES[DivisionInputs]
    assert div.result_key() == config_key(["a", "b", 2.0, 0]) != div.key()
    lab = EXAMPLES[LabelsInputs]
    assert lab.result_key() == config_key(["d", "confidence", 2])


def test_builder_reads_the_config_into_the_inputs():
    from llm_efficiency_bench.adaptive_step import stage_settings

    cfg = compose("adaptive_step", ["experiment=bon", "profile=smoke", "pipeline.batch=32",
                                    "pipeline.rerun=[division]"])
    assert stage_settings.run_options(cfg) == RunOptions(rerun=frozenset({"division"}), progress=True)
    s = stage_settings.samples_inputs(cfg, "p", "val")
    assert (s.n_q, s.n_s, s.batch, s.entry_name()) == (10, 16, 32, "samples_val")
    assert (stage_settings.n_questions(cfg, "prm"), stage_settings.n_samples(cfg, "test")) == (20, 16)
    t = stage_settings.tvd_inputs(cfg, "p", "m", 7)
    assert (t.n, t.k, t.thr, t.max_new) == (7, int(cfg.tvd.top_k), float(cfg.tvd.threshold), 56)
    # a selection variant's PRM-data sizes replace the profile's in a copy; any other size is refused
    more = stage_settings.with_prm_data(cfg, {"prm_questions": 40})
    assert (stage_settings.n_questions(more, "prm"), stage_settings.n_questions(cfg, "prm")) == (40, 20)
    assert stage_settings.with_prm_data(cfg, {}) is cfg
    with pytest.raises(KeyError, match="test_questions"):
        stage_settings.with_prm_data(cfg, {"test_questions": 40})


def _functions_with_cfg(tree: ast.AST) -> set[str]:
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
            and any(a.arg == "cfg" for a in n.args.args + n.args.kwonlyargs)}


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_stage_modules_read_no_config(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    reads = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute)
             and isinstance(n.value, ast.Name) and n.value.id == "cfg"]
    assert not reads, f"{module}.py reads the config at lines {reads}"
    assert _functions_with_cfg(tree) <= CONFIG_ENTRIES, module


def test_stages_refuse_results_their_inputs_do_not_name():
    from llm_efficiency_bench.adaptive_step.labels import rollout_labels
    from llm_efficiency_bench.adaptive_step.prm import score_candidates, train_prm
    from llm_efficiency_bench.adaptive_step.samples import Division, Samples, divide, sample_solutions
    from llm_efficiency_bench.adaptive_step.tvd import run_tvd

    run, log = RunOptions(), print
    pol = SimpleNamespace(key="other-policy")
    with pytest.raises(ValueError, match="policy"):
        sample_solutions(EXAMPLES[SamplesInputs], pol, run, log)
    with pytest.raises(ValueError, match="policy"):
        run_tvd(EXAMPLES[TvdInputs], pol, None, run, log)
    with pytest.raises(ValueError, match="policy"):
        train_prm(EXAMPLES[PrmInputs], pol, None, [], [], run, log)
    s = Samples("prm", [], [], "a")
    with pytest.raises(ValueError, match="samples"):
        divide(EXAMPLES[DivisionInputs], pol, s, Samples("test", [], [], "not-b"), run, log)
    div = Division(0.1, 2.0, {}, {}, {}, {}, ("a", "b"), "other-division")
    with pytest.raises(ValueError, match="division"):
        rollout_labels(EXAMPLES[LabelsInputs], pol, s, div, run, log)
    with pytest.raises(ValueError, match="samples"):
        score_candidates(EXAMPLES[ScoresInputs], pol, None, Samples("test", [], [{}, {}], "other"), run, log)


def test_every_inputs_class_is_covered():
    classes = {v for v in vars(inputs_module).values() if isinstance(v, type) and dataclasses.is_dataclass(v)
               and v.__module__ == inputs_module.__name__}
    assert classes == set(EXAMPLES)
