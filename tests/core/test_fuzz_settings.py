"""Every setting is validated up front: random values for every numeric setting, given on the command line
as the user gives them (`experiment.<key>=` for an experiment's settings, `<block>.<key>=` for a paper-wide
one), give a run or one line naming the setting, never a traceback.

The papers and their experiments come from the config tree (`core.paths.papers()`, the `experiment/`
folders), so a new paper or experiment is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import string
import subprocess
import sys
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from omegaconf import OmegaConf

from llm_efficiency_bench.core import runner
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import CONTRACT_KEYS, ExperimentSpec, resolve_experiment, spec_of
from llm_efficiency_bench.core.paths import config_dir_of, papers
from llm_efficiency_bench.core.validate import load_spec, numeric_leaves
from tests.conftest import REPO, compose

pytestmark = pytest.mark.e2e  # composes every experiment of every paper many times (about 30 s)

PAPERS = papers()
EXPERIMENTS = {paper: sorted(p.stem for p in (config_dir_of(paper) / paper / "experiment").glob("*.yaml"))
               for paper in PAPERS}
PROFILES = {paper: sorted(p.stem for p in (config_dir_of(paper) / paper / "profile").glob("*.yaml"))
            for paper in PAPERS}
CASES = [pytest.param(paper, name, id=f"{paper}/{name}")
         for paper in PAPERS for name in EXPERIMENTS[paper]]


def declared_spec(paper: str, name: str) -> ExperimentSpec:
    """The declaration of experiment `name`, found through its YAML's `fn`."""
    path = config_dir_of(paper) / paper / "experiment" / f"{name}.yaml"
    return spec_of(resolve_experiment(yaml.safe_load(path.read_text())["experiment"]["fn"]))


def numeric_fields(spec: ExperimentSpec) -> dict[str, dataclasses.Field]:
    """The settings whose type holds a number: int, float, and lists or mappings of them."""
    if spec.settings is None:
        return {}
    return {f.name: f for f in dataclasses.fields(spec.settings)
            if re.search(r"\b(int|float)\b", f.type if isinstance(f.type, str) else repr(f.type))}


def _yaml_sets_settings(paper: str, name: str) -> bool:
    exp = yaml.safe_load((config_dir_of(paper) / paper / "experiment" / f"{name}.yaml").read_text())["experiment"]
    return any(k not in CONTRACT_KEYS for k in exp) or any((exp.get("profiles") or {}).values())


# ------------------------------------------------------------------------------------------------ coverage
@pytest.mark.parametrize("paper,name", CASES)
def test_every_numeric_setting_has_a_range_checker(paper, name):
    spec = declared_spec(paper, name)
    assert spec.settings is not None or not _yaml_sets_settings(paper, name), \
        f"{paper}/{name}: its YAML sets settings, but its function declares no schema (@experiment(settings=...))"
    missing = [k for k, f in numeric_fields(spec).items() if f.metadata.get("check") is None]
    assert not missing, f"{paper}/{name}: numeric settings without a range checker (setting(default, check, help)): {missing}"


def _declared(key: str, spec: dict[str, Any]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in spec)  # a declared key or an entry of a declared map


@pytest.mark.parametrize("paper", PAPERS)
def test_every_numeric_key_of_the_paper_wide_config_is_declared(paper):
    """Outside `experiment.*` (the schema's), every number of the composed config is in COMMON or the
    paper's SPEC: each experiment with the default profile, and each profile with the default experiment."""
    spec, _ = load_spec(paper)
    runs = [[f"experiment={e}"] for e in EXPERIMENTS[paper]] + [[f"profile={p}"] for p in PROFILES[paper]]
    missing = set()
    for overrides in runs:
        try:
            cfg = compose(paper, overrides)
        except ConfigError as e:  # an experiment a profile refuses by design: the profile with another one
            assert e.setting == "profile", e
            cfg = next(c for c in (_composes(paper, [*overrides, f"experiment={x}"]) for x in EXPERIMENTS[paper]) if c)
        missing |= {f"{k} ({' '.join(overrides)})" for k in numeric_leaves(cfg)
                    if not k.startswith("experiment.") and not _declared(k, spec)}
    assert not missing, f"{paper}: paper-wide numbers not declared in settings.py SPEC: {sorted(missing)}"


def _composes(paper: str, overrides: list[str]) -> Any:
    """The composed config, or None when the settings refuse it."""
    try:
        return compose(paper, overrides)
    except ConfigError:
        return None


# ------------------------------------------------------------------------------------------- in-process fuzz
def _run_noop(paper: str, cfg) -> tuple[bool, ConfigError | None]:
    """runner.run with the experiment replaced by a no-op (and no environment capture): validation only."""
    calls: list[int] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "resolve_experiment", lambda fn_name: (lambda ctx: calls.append(1)))
        mp.setattr(runner.env_mod, "capture", lambda device="cpu": {"code_hash": "fuzz"})
        mp.setattr(runner, "_comparison", lambda *a: "")
        try:
            runner.run(paper, cfg)
        except ConfigError as e:
            assert not calls, "the experiment started before validation failed"
            return False, e
    assert calls == [1]
    return True, None


def _run_overrides(paper: str, overrides: list[str]) -> ConfigError | None:
    """Compose as the entry point does (`tests.conftest.compose`), then run a no-op: the error, or None."""
    try:
        cfg = compose(paper, overrides)
    except ConfigError as e:
        return e
    return _run_noop(paper, cfg)[1]


# Letters Hydra reads as something other than text (null, a bool, a float) are left out of the text values.
TEXT = st.text(alphabet=string.ascii_letters, min_size=1, max_size=6).filter(
    lambda s: s.lower() not in ("null", "true", "false", "nan", "inf"))
NUMBER = st.one_of(st.integers(-10**12, 10**12), st.floats(-1e6, 1e6, allow_nan=False),
                   st.sampled_from([0, -1, 1, 2, 0.5, 7.5, 1e30, -1e30, 1e6, float("nan"), float("inf")]))
VALUES = st.one_of(TEXT, NUMBER, st.sampled_from([[], None, True]),
                   st.lists(st.one_of(st.integers(-3, 10**7), st.floats(-1, 1e3, allow_nan=False), TEXT), max_size=4))


def hydra_text(v: Any) -> str:
    """A value as the command line writes it."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list):
        return "[" + ",".join(hydra_text(x) for x in v) + "]"
    return repr(v) if isinstance(v, float) else str(v)


def _shape(v: Any) -> str:
    return "list" if isinstance(v, (list, tuple)) else "map" if isinstance(v, dict) else "number"


def must_refuse(value: Any, default: Any) -> bool:
    """Values no numeric setting may accept: text, NaN/inf, booleans, a list for a number or the reverse."""
    if isinstance(value, (str, bool)) or (isinstance(value, float) and not math.isfinite(value)):
        return True
    return value is not None and default is not None and _shape(value) != _shape(default)


def _full(key: str) -> str:
    """An experiment rule's key as a config key (`cache` -> `experiment.cache`, `/fourier.x` -> `fourier.x`)."""
    return key[1:] if key.startswith("/") else f"experiment.{key}"


def allowed_settings(paper: str, spec: ExperimentSpec, key: str) -> set[str]:
    """The settings an error about `key` may name: the key, a declared setting holding it (a checker of a
    whole mapping, e.g. `select.variants` for `select.variants.early_stop.epochs`), and the setting a rule
    reading it names."""
    declared = load_spec(paper)[0]
    names = {key} | {k for k in declared if key.startswith(k + ".")}
    for rule in spec.rules:
        if key in {_full(k) for k in rule.keys}:
            names.add(_full(rule.setting or rule.keys[0]))
    for rule in load_spec(paper)[1]:
        if key in rule.keys:
            names.add(rule.setting or rule.keys[0])
    return names


@functools.lru_cache(maxsize=None)
def _fuzz_keys(paper: str, name: str, base: tuple[str, ...]) -> dict[str, tuple[Any, bool]]:
    """Every numeric setting of the experiment and every numeric paper-wide key, with its smoke value and
    whether a checker declares it: {key: (value, checked)}."""
    smoke = compose(paper, list(base))

    def plain(key: str) -> Any:
        v = OmegaConf.select(smoke, key)
        return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v

    spec = declared_spec(paper, name)
    out = {f"experiment.{k}": (plain(f"experiment.{k}"), f.metadata.get("check") is not None)
           for k, f in numeric_fields(spec).items()}
    common, _ = load_spec(paper)
    for k in numeric_leaves(smoke):
        # (entries of a mapping keyed by numbers, e.g. third_party_tflops.576, cannot be addressed by a dotted key)
        if not k.startswith("experiment.") and not any(p.isdigit() for p in k.split(".")):
            out[k] = (plain(k), _declared(k, common))
    return out


@pytest.mark.parametrize("paper", PAPERS)
# The shrink phase is left out: a failing example is reported as drawn (shrinking reruns compose many times).
@settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_numeric_settings_in_process(paper, tmp_path_factory, data):
    name = data.draw(st.sampled_from(EXPERIMENTS[paper]), label="experiment")
    base = [f"experiment={name}", "profile=smoke", f"results_dir={tmp_path_factory.getbasetemp() / 'fuzz'}"]
    keys = _fuzz_keys(paper, name, tuple(base))
    key = data.draw(st.sampled_from(sorted(keys)), label="setting")
    value = data.draw(VALUES, label="value")
    err = _run_overrides(paper, [*base, f"{key}={hydra_text(value)}"])
    if err is not None:
        assert "\n" not in str(err), str(err)
        assert err.setting in allowed_settings(paper, declared_spec(paper, name), key), \
            f"{key}={hydra_text(value)} was refused naming {err.setting!r}: {err}"
    else:
        default, checked = keys[key]
        assert not (checked and must_refuse(value, default)), f"{paper}/{name}: {key}={hydra_text(value)} was accepted"


# -------------------------------------------------------------------------------------------- named cases
def _case(paper: str, overrides: list[str], setting: str, needs_schema: bool = True):
    """A named case; `needs_schema=False`: refused before the experiment's settings are read."""
    return pytest.param(paper, overrides, setting, id=f"{paper}: {' '.join(overrides)}")


# An experiment without a schema refuses every key its YAML sets with this; such an error says nothing
# about the value a case gives.
NO_SCHEMA = "declares no settings"

# (paper, overrides, the setting the error names), through the same composition as the entry point.
BAD = [
    _case("adaptive_step", ["experiment=tvd", "tvd.threshold=1.5"], "tvd.threshold"),
    _case("adaptive_step", ["experiment=tvd", "tvd.threshold=0"], "tvd.threshold"),
    _case("adaptive_step", ["experiment=tvd", "tvd.top_k=0"], "tvd.top_k"),
    _case("adaptive_step", ["experiment=tvd", "experiment.prm=nope"], "experiment.prm"),
    _case("adaptive_step", ["experiment=bon", "experiment.n=[1,2,64]"], "experiment.n"),  # pool of 16 in smoke
    _case("adaptive_step", ["experiment=bon", "experiment.seeds=0"], "experiment.seeds"),
    _case("adaptive_step", ["experiment=cost", "method.percentile=abc"], "method.percentile"),
    _case("adaptive_step", ["experiment=cost", "experiment.splits=[confidence,nope]"], "experiment.splits"),
    _case("fourier_vlm", ["experiment=flops", "fourier.budgets=[7.5]"], "fourier.budgets"),
    _case("fourier_vlm", ["experiment=flops", "fourier.budgets=[]"], "fourier.budgets"),
    _case("fourier_vlm", ["experiment=lowpass", "fourier.budgets=[30]"], "fourier.budgets"),
    _case("fourier_vlm", ["experiment=speed", "experiment.new_tokens=1e8"], "experiment.new_tokens"),
    _case("fourier_vlm", ["experiment=speed", "experiment.new_tokens=abc"], "experiment.new_tokens"),
    _case("fourier_vlm", ["experiment=speed", "experiment.new_tokenz=3"], "experiment.new_tokenz"),
    _case("fourier_vlm", ["experiment=flops", "experiment.crosscheck_tokens=[50]"], "experiment.crosscheck_tokens"),
    _case("fourier_vlm", ["experiment=flops", "experiment.third_party_tflops=[]"], "experiment.third_party_tflops"),
    _case("fourier_vlm", ["experiment=lowpass", "experiment.image_side=300"], "experiment.image_side"),
    _case("streaming_llm", ["experiment=ppl_cache", "experiment.cache_sizes=[]"], "experiment.cache_sizes"),
    _case("streaming_llm", ["experiment=ppl_cache", "eval.chunk=0"], "eval.chunk"),
    _case("streaming_llm", ["experiment=ppl_sinks", "experiment.sink_counts=[0,1,64]"], "experiment.sink_counts"),
    _case("streaming_llm", ["experiment=speed", "experiment.tokens=-1"], "experiment.tokens"),
    _case("streaming_llm", ["experiment=ppl_4m", "seed=-1"], "seed"),
    _case("streaming_llm", ["experiment=ppl_4m", "data=text_dir"], "data.subdir", needs_schema=False),
]


@pytest.mark.parametrize("paper,overrides,setting", BAD)
def test_bad_settings_name_the_setting(tmp_path, paper, overrides, setting):
    err = _run_overrides(paper, ["profile=smoke", f"results_dir={tmp_path}", *overrides])
    assert err is not None and err.setting == setting, err
    assert "\n" not in str(err) and NO_SCHEMA not in str(err)
    assert not (tmp_path / paper).exists()  # refused before anything was written


def test_results_dir_that_is_a_file_or_read_only(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for bad in (f, f / "below", "/proc/results"):  # /proc: not writable, even for root
        err = _run_overrides("fourier_vlm", ["profile=smoke", "experiment=flops", f"results_dir={bad}"])
        assert err is not None and err.setting == "results_dir", (bad, err)


@pytest.mark.e2e
@pytest.mark.parametrize("paper,args", [
    pytest.param("streaming_llm", ["experiment=ppl_cache", "experiment.cache_sizes=[]"]),
    pytest.param("fourier_vlm", ["experiment=speed", "experiment.new_tokens=1e8"]),
    pytest.param("fourier_vlm", ["experiment=speed", "experiment.new_tokenz=3"]),
    pytest.param("adaptive_step", ["experiment=tvd", "tvd.threshold=1.5"]),
])
def test_entry_points_exit_2_with_one_line(tmp_path, paper, args):
    r = subprocess.run([sys.executable, "-m", f"reproduce.{paper}", "profile=smoke", f"results_dir={tmp_path}", *args],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"`{args[1].split('=')[0]}`" in lines[0]
    assert NO_SCHEMA not in lines[0]
