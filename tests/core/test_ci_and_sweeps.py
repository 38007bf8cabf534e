"""CI workflows are valid, the regression checker flags what moved, and local multirun sweeps work."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from llm_efficiency_bench.core.regress import compare_records
from tests.conftest import REPO, compose

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
                        "scale.cache_sizes=[16],[32]", "scale.ablation_tokens=600", "eval.chunk=64",
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


OVERRIDE_KEYS = st.sampled_from(["experiment", "profile", "model", "data", "scale.cache", "eval.chunk", "nope.key"])
VALUES = st.one_of(st.sampled_from(["ppl_4m", "smoke", "cpu", "tiny_llama", "gutenberg", "-1", "null", "[1,2]"]),
                   st.text(alphabet="abcxyz0123_./", min_size=0, max_size=8))


@pytest.mark.e2e
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(OVERRIDE_KEYS, VALUES), max_size=3))
def test_config_composition_fuzz(pairs):
    """Bad overrides fail with Hydra's/OmegaConf's own errors, never with an unrelated crash."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from llm_efficiency_bench.core.errors import ConfigError
    from llm_efficiency_bench.core.runner import check_group_overrides

    overrides = [f"{k}={v}" for k, v in pairs]
    try:
        check_group_overrides("streaming_llm", overrides)  # what the entry point runs before Hydra
    except ConfigError as e:
        assert e.setting in ("experiment", "profile", "model", "data")
        return
    try:
        cfg = compose("streaming_llm", overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        assert str(e)
        return
    assert cfg.paper == "streaming_llm"


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
