"""Every setting is validated up front: random values for every numeric setting of all three entry points
give a run or one line naming the setting, never a traceback."""

from __future__ import annotations

import copy
import math
import re
import string
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from omegaconf import OmegaConf

from llm_efficiency_bench.core import runner
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.validate import covered, numeric_leaves, source_key
from tests.conftest import CONFIGS, REPO


def patch_experiment(mp, fn) -> None:
    """Make the runner run `fn` whatever experiment the config names (`experiment.fn`), without importing
    the real experiment modules."""
    mp.setattr(runner, "resolve_experiment", lambda spec: fn)

# Every experiment of every paper, as its config files name them (a new experiment is fuzzed too).
EXPERIMENTS = {paper: sorted(p.stem for p in (CONFIGS / paper / "experiment").glob("*.yaml"))
               for paper in ("streaming_llm", "fourier_vlm", "adaptive_step")}


@pytest.fixture(scope="module")
def hydra():
    """Hydra's compose API initialised once for this module (composition is what the entry points do)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        yield lambda paper, overrides: compose(config_name=paper, overrides=overrides)
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def bases(hydra):
    """The composed smoke config of every experiment."""
    return {(paper, name): hydra(paper, [f"experiment={name}", "profile=smoke"])
            for paper, names in EXPERIMENTS.items() for name in names}


def _targets(cfg) -> set[str]:
    """Keys some other setting interpolates (`${scale.cache}`)."""
    found: set[str] = set()

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            found.update(re.findall(r"\$\{([^}:]+)\}", x))

    walk(OmegaConf.to_container(cfg, resolve=False))
    return found


def _used(cfg, key: str, targets: set[str]) -> bool:
    """A profile size (`scale.*`) only matters when the experiment interpolates it."""
    return not key.startswith("scale.") or any(key == t or key.startswith(t + ".") for t in targets)


@pytest.mark.e2e
def test_every_numeric_setting_is_declared(bases):
    missing = []
    for (paper, name), cfg in bases.items():
        t = _targets(cfg)
        missing += [f"{paper}/{name}: {k}" for k in numeric_leaves(cfg) if _used(cfg, k, t) and not covered(paper, cfg, k)]
    assert not missing, "settings without a type/range in llm_efficiency_bench/<paper>/settings.py: " + ", ".join(missing)


def _run_noop(paper: str, name: str, cfg, results) -> tuple[bool, ConfigError | None]:
    """runner.run with the experiment replaced by a no-op (and no environment capture): validation only."""
    calls: list[int] = []
    OmegaConf.update(cfg, "results_dir", str(results))
    with pytest.MonkeyPatch.context() as mp:
        patch_experiment(mp, lambda ctx: calls.append(1))
        mp.setattr(runner.env_mod, "capture", lambda device="cpu": {"code_hash": "fuzz"})
        mp.setattr(runner, "_comparison", lambda *a: "")
        try:
            runner.run(paper, cfg)
        except ConfigError as e:
            assert not calls, "the experiment started before validation failed"
            return False, e
    assert calls == [1]
    return True, None


TEXT = st.text(alphabet=string.ascii_letters, min_size=1, max_size=6)
VALUES = st.one_of(
    TEXT,
    st.integers(-10**12, 10**12),
    st.sampled_from([0, -1, 1, 2, 0.5, 7.5, 1e30, -1e30, float("nan"), float("inf"), [], None, True]),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.lists(st.one_of(st.integers(-3, 10**7), st.floats(-1, 1e3, allow_nan=False), TEXT), max_size=4),
)


def _must_refuse(value, base) -> bool:
    """Values no numeric setting may accept: text, NaN/inf, booleans, a list for a number or vice versa."""
    if isinstance(value, (str, bool)) or (isinstance(value, float) and not math.isfinite(value)):
        return True
    return isinstance(value, list) != isinstance(base, list)


@pytest.mark.e2e
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_numeric_settings_in_process(bases, tmp_path_factory, data):
    paper, name = data.draw(st.sampled_from(sorted(bases)), label="experiment")
    base = bases[(paper, name)]
    # (entries of a mapping keyed by numbers, e.g. third_party_tflops.576, cannot be addressed by a dotted key)
    keys = [k for k in numeric_leaves(base) if not any(p.isdigit() for p in k.split("."))]
    key = data.draw(st.sampled_from(keys), label="setting")
    value = data.draw(VALUES, label="value")
    cfg = copy.deepcopy(base)
    original = OmegaConf.select(cfg, key)
    original = OmegaConf.to_container(original, resolve=True) if OmegaConf.is_config(original) else original
    # Set what a user sets: the key an interpolated setting points at (experiment.arch.heads -> scale.pretrain_arch.heads).
    OmegaConf.update(cfg, source_key(base, key), value, merge=False)
    ok, err = _run_noop(paper, name, cfg, tmp_path_factory.getbasetemp() / "fuzz")
    if err is not None:
        assert "\n" not in str(err) and err.setting, str(err)
    elif covered(paper, base, key) and _used(base, key, _targets(base)):
        assert not _must_refuse(value, original), f"{paper}/{name}: {key}={value!r} was accepted"


# The examples, through Hydra's override parser: (paper, overrides, the setting the error names).
BAD = [
    ("adaptive_step", ["experiment=tvd", "tvd.threshold=1.5"], "tvd.threshold"),
    ("adaptive_step", ["experiment=tvd", "tvd.threshold=0"], "tvd.threshold"),
    ("adaptive_step", ["experiment=tvd", "tvd.top_k=0"], "tvd.top_k"),
    ("adaptive_step", ["experiment=tvd", "experiment.prm=nope"], "experiment.prm"),
    ("adaptive_step", ["experiment=bon", "scale.bon_n=[1,2,64]"], "scale.bon_n"),  # pool of 16 in smoke
    ("adaptive_step", ["experiment=bon", "scale.bon_seeds=0"], "scale.bon_seeds"),
    ("adaptive_step", ["experiment=cost", "scale.rollouts=-2"], "scale.rollouts"),
    ("adaptive_step", ["experiment=cost", "method.percentile=abc"], "method.percentile"),
    ("adaptive_step", ["experiment=cost", "method.splits=[confidence,nope]"], "method.splits"),
    ("fourier_vlm", ["experiment=flops", "fourier.budgets=[7.5]"], "fourier.budgets"),
    ("fourier_vlm", ["experiment=flops", "fourier.budgets=[]"], "fourier.budgets"),
    ("fourier_vlm", ["experiment=lowpass", "fourier.budgets=[30]"], "fourier.budgets"),
    ("fourier_vlm", ["experiment=speed", "scale.new_tokens=1e8"], "scale.new_tokens"),
    ("fourier_vlm", ["experiment=speed", "scale.new_tokens=abc"], "scale.new_tokens"),
    ("streaming_llm", ["experiment=ppl_cache", "scale.cache_sizes=[]"], "scale.cache_sizes"),
    ("streaming_llm", ["experiment=ppl_cache", "eval.chunk=0"], "eval.chunk"),
    ("streaming_llm", ["experiment=ppl_sinks", "scale.sink_counts=[0,1,64]"], "scale.sink_counts"),
    ("streaming_llm", ["experiment=speed", "scale.speed_tokens=-1"], "scale.speed_tokens"),
    ("streaming_llm", ["experiment=ppl_4m", "seed=-1"], "seed"),
    ("streaming_llm", ["experiment=ppl_4m", "data=text_dir"], "data.subdir"),
]


@pytest.mark.parametrize("paper,overrides,setting", BAD, ids=[" ".join(o) for _, o, _ in BAD])
def test_bad_settings_name_the_setting(hydra, tmp_path, paper, overrides, setting):
    cfg = hydra(paper, ["profile=smoke", *overrides])
    ok, err = _run_noop(paper, overrides[0].split("=")[1], cfg, tmp_path)
    assert err is not None and err.setting == setting, err
    assert not (tmp_path / paper).exists()  # refused before anything was written


def test_results_dir_that_is_a_file_or_read_only(hydra, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for bad in (f, f / "below", "/proc/results"):  # /proc: not writable, even for root
        cfg = hydra("fourier_vlm", ["profile=smoke", "experiment=flops"])
        ok, err = _run_noop("fourier_vlm", "flops", cfg, bad)
        assert err is not None and err.setting == "results_dir", (bad, err)


@pytest.mark.e2e
@pytest.mark.parametrize("paper,args", [
    ("streaming_llm", ["experiment=ppl_cache", "scale.cache_sizes=[]"]),
    ("fourier_vlm", ["experiment=speed", "scale.new_tokens=1e8"]),
    ("adaptive_step", ["experiment=tvd", "tvd.threshold=1.5"]),
])
def test_entry_points_exit_2_with_one_line(tmp_path, paper, args):
    r = subprocess.run([sys.executable, "-m", f"reproduce.{paper}", "profile=smoke", f"results_dir={tmp_path}", *args],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and args[1].split("=")[0] in lines[0]
