"""CI workflows are valid, the regression checker flags what moved, and local multirun sweeps work."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.overrides import group_dirs
from llm_efficiency_bench.core.paths import config_dir_of, papers
from llm_efficiency_bench.core.regress import compare_records
from tests.conftest import REPO, compose
from tests.core.test_fuzz_settings import EXPERIMENTS, allowed_settings, declared_spec

pytestmark = pytest.mark.e2e  # sweeps, reports and composition fuzz through subprocesses and Hydra

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_syntax(path):
    wf = yaml.safe_load(path.read_text())
    assert isinstance(wf, dict) and wf.get("name")
    assert True in wf or "on" in wf  # YAML 1.1 reads the bare key `on` as True
    assert wf["jobs"], "no jobs"
    for job_name, job in wf["jobs"].items():
        assert job.get("runs-on"), job_name
        assert job["steps"], job_name
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), (job_name, step)
            if "run" in step:  # every shell step must parse as bash
                body = re.sub(r"\$\{\{.*?\}\}", "X", step["run"])  # GitHub expressions -> a word
                r = subprocess.run(["bash", "-n"], input=body, text=True, capture_output=True)
                assert r.returncode == 0, (job_name, step.get("name"), r.stderr)
            if "make " in step.get("run", ""):
                for target in [w for w in step["run"].split() if w and not w.startswith("-")][1:2]:
                    mk = subprocess.run(["make", "-n", target.split()[0]], cwd=REPO, capture_output=True, text=True)
                    assert mk.returncode == 0, (target, mk.stderr)


def test_gpu_workflow_runs_paper_profile_check_and_uploads():
    wf = yaml.safe_load((REPO / ".github/workflows/gpu-paper.yml").read_text())
    job = wf["jobs"]["paper"]
    assert "gpu" in job["runs-on"] and "self-hosted" in job["runs-on"]
    text = json.dumps(job["steps"])
    assert "profile=paper" in text and "reproduce.check" in text and "upload-artifact" in text


def _rec(profile="cpu", device="cpu: X", **metrics):
    return {"paper": "p", "experiment": "e", "profile": profile, "env": {"device_name": device},
            "metrics": {k: {"value": v[0], "unit": v[1], "direction": v[2]} for k, v in metrics.items()}}


def test_regression_verdicts():
    old = _rec(**{"ppl.a": (10.0, "ppl", "lower"), "lat": (100.0, "ms", "lower"), "gone": (1.0, "x", "none"),
                  "acc": (0.5, "fraction", "higher")})
    new = _rec(**{"ppl.a": (10.5, "ppl", "lower"), "lat": (110.0, "ms", "lower"), "added": (1.0, "x", "none"),
                  "acc": (0.6, "fraction", "higher")})
    v = {c.metric: c.verdict for c in compare_records(old, new)}
    assert v == {"ppl.a": "regressed", "lat": "same", "gone": "invalid", "added": "only in new",
                 "acc": "improved"}
    other_device = _rec(device="cuda: A100", **{"lat": (500.0, "ms", "lower")})
    assert compare_records(old, other_device)[2].verdict == "skipped (other device)"


def test_check_command_exits_nonzero_on_regression(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    for root, val in ((base, 10.0), (new, 12.0)):
        d = root / "p" / "e" / "cpu"
        d.mkdir(parents=True)
        rec = {"schema_version": 1, "config": {}, **_rec(**{"ppl": (val, "ppl", "lower")})}
        (d / "record.json").write_text(json.dumps(rec))
    r = subprocess.run([sys.executable, "-m", "reproduce.check", "--results", str(new), "--baseline", str(base)],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1 and "regressed" in r.stdout


@pytest.mark.e2e
def test_local_multirun_sweep_merges_into_one_report(tmp_path, data_dir):
    r = subprocess.run([sys.executable, "-m", "reproduce.streaming_llm", "-m", "profile=smoke", "experiment=ppl_cache",
                        "experiment.cache_sizes=[16],[32]", "experiment.max_tokens=600", "eval.chunk=64",
                        f"results_dir={tmp_path}", f"hydra.sweep.dir={tmp_path}/multirun"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    records = sorted((tmp_path / "streaming_llm" / "ppl_cache" / "smoke").glob("*/record.json"))
    assert len(records) == 2
    out = tmp_path / "REPORT.md"
    r = subprocess.run([sys.executable, "-m", "reproduce.report", "--results", str(tmp_path), "--out", str(out),
                        "--profile", "smoke"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and out.read_text().count("### ppl_cache / smoke") == 2


def _fuzz_pool(paper: str) -> tuple[list[str], list[str]]:
    """(keys, values) a composition fuzz draws from: the paper's config groups and some of their choices, a
    few paper-wide keys of its top config, and keys that exist nowhere."""
    groups = group_dirs(paper, config_dir_of(paper))
    choices = sorted({p.stem for d in groups.values() for p in d.glob("*.yaml")})[:12]
    top = yaml.safe_load((config_dir_of(paper) / f"{paper}.yaml").read_text())
    wide = sorted(f"{k}.{sub}" for k, v in top.items() if isinstance(v, dict) and k != "hydra" for sub in v)[:3]
    return [*sorted(groups), *wide, "seed", "experiment.nope", "nope.key"], [*choices, "-1", "null", "[1,2]"]


@pytest.mark.parametrize("paper", papers())
@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_config_composition_fuzz(paper, data):
    """Any overrides compose (through `tests.conftest.compose`, as the entry point does) or fail with one
    ConfigError naming a key or group the overrides gave, never with an unrelated crash."""
    keys, values = _fuzz_pool(paper)
    value = st.one_of(st.sampled_from(values), st.text(alphabet="abcxyz0123_./", min_size=0, max_size=8))
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(keys), value), max_size=3), label="overrides")
    overrides = [f"{k}={v}" for k, v in pairs]
    try:
        cfg = compose(paper, overrides)
    except ConfigError as e:
        assert "\n" not in str(e)
        # the key given, a key below it, or the setting a rule reading it names (fourier.base_side=abc fails
        # the rule on experiment.crosscheck_tokens, which reads it)
        named = {n for k, _ in pairs for e_name in EXPERIMENTS[paper]
                 for n in allowed_settings(paper, declared_spec(paper, e_name), k)}
        assert any(e.setting == k or e.setting.startswith(k + ".") for k in named), (overrides, e)
        return
    assert cfg.paper == paper


@pytest.mark.parametrize("launcher,target", [("local_parallel", "JoblibLauncher"), ("slurm_gpu", "SlurmLauncher")])
def test_launcher_configs_compose(launcher, target):
    from hydra import compose as h_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "llm_efficiency_bench" / "configs"), version_base="1.3"):
        cfg = h_compose(config_name="streaming_llm", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.e2e
def test_entry_point_refuses_unknown_group_choice():
    r = subprocess.run([sys.executable, "-m", "reproduce.streaming_llm", "model=123"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown model '123'" in r.stderr and "smollm2_135m" in r.stderr
