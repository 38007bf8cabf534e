"""A paper the suite does not ship: the toy paper in tests/toy_paper/toy runs, refuses a misspelt setting,
is listed and is reported, found only through `BENCH_PAPERS_PATH` (its config tree and claims) and the
Python path (its package). No file of the suite names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e  # runs the fourth paper's entry point, listing and report in subprocesses

TOY_ROOT = REPO / "tests" / "toy_paper"  # on the Python path: the package `toy`
TOY = TOY_ROOT / "toy"  # in BENCH_PAPERS_PATH: configs/toy.yaml, configs/toy/, references/toy.yaml


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TOY_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "BENCH_PAPERS_PATH": str(TOY), "OMP_NUM_THREADS": "1"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Both toy experiments run once through the toy's own entry point (`python -m toy`), smoke profile."""
    out = tmp_path_factory.mktemp("toy_results")
    for name in ("fit", "pi"):
        r = _run("-m", "toy", f"experiment={name}", "profile=smoke", f"results_dir={out}")
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out


def test_the_entry_point_runs_and_writes_the_record(results):
    run_dir = results / "toy" / "fit" / "smoke"
    rec = json.loads((run_dir / "record.json").read_text())
    assert (rec["paper"], rec["experiment"], rec["profile"]) == ("toy", "fit", "smoke")
    slope = rec["metrics"]["slope"]
    assert slope["unit"] == "1" and slope["direction"] == "none" and abs(slope["value"] - 2.0) < 0.1
    assert rec["metrics"]["residual_rms"]["direction"] == "lower"
    # the profile's size reached the function; the schema's defaults filled the rest
    assert rec["config"]["experiment"]["points"] == 200 and rec["config"]["experiment"]["slope"] == 2.0
    assert "profiles" not in rec["config"]["experiment"]
    assert len((run_dir / "points.csv").read_text().splitlines()) == 1 + 200
    # the runner drew the figure with the drawer `@experiment(figures=...)` names
    assert "fit.png" in rec["artifacts"]["figures"] and (run_dir / "fit.png").stat().st_size > 0
    assert "reproduced" in (run_dir / "comparison.md").read_text()


@pytest.mark.parametrize("args,named,hint", [
    (["experiment.pointz=5"], "experiment.pointz", "did you mean `points`?"),
    (["toy.nois=1"], "toy.nois", "did you mean `toy.noise`?"),
    (["experiment=fitt"], "experiment", "did you mean `fit`?"),
    (["experiment.points=2"], "experiment.points", "must be in [3,"),
    (["experiment.slope=0.01"], "experiment.slope", "rises less than the noise"),
    (["toy.noise=-1"], "toy.noise", "must be in [0,"),
])
def test_a_misspelt_or_bad_setting_exits_2_with_one_line(tmp_path, args, named, hint):
    r = _run("-m", "toy", "profile=smoke", f"results_dir={tmp_path}", *args)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stdout
    assert f"`{named}`" in lines[0] and hint in lines[0]
    assert not (tmp_path / "toy").exists()  # refused before anything was written


def test_the_listing_names_its_experiments_claims_and_run_order(results):
    r = _run("-m", "toy", "--list", "--results", str(results))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("toy: 2 experiments")
    assert "fit: A line fitted by least squares (Eq. 1)" in r.stdout and "claims (1): fit_slope" in r.stdout
    assert "claims (1): pi_estimate" in r.stdout and "measured: smoke" in r.stdout
    order = _run("-m", "llm_efficiency_bench.cli.listing", "--order", "toy")
    assert order.returncode == 0 and order.stdout.split() == ["fit", "pi"]
    papers = _run("-m", "llm_efficiency_bench.cli.listing", "--papers").stdout.split()
    assert "toy" in papers and "fourier_vlm" in papers


def test_the_report_judges_the_claims_and_redraws_the_figures(results, tmp_path):
    for png in ("fit/smoke/fit.png", "pi/smoke/pi.png"):
        (results / "toy" / png).unlink()
    out = tmp_path / "REPORT.md"
    r = _run("-m", "reproduce.report", "--results", str(results), "--out", str(out), "--profile", "smoke")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    text = out.read_text()
    assert "| Toy paper | 1 | 1 | 0 | 0 | 0 | 2 |" in text  # fit_slope reproduced, pi_estimate shape reproduced
    assert "## toy" in text and "Least squares recovers the slope" in text
    for png in ("fit/smoke/fit.png", "pi/smoke/pi.png"):  # redrawn by the drawers the YAMLs' `fn` declare
        assert (results / "toy" / png).is_file() and f"toy/{png})" in text


def test_no_file_of_the_suite_names_the_toy():
    """The toy is found, never listed: no module, config or Makefile line of the suite knows it."""
    import re

    files = [*(REPO / "llm_efficiency_bench").rglob("*.py"), *(REPO / "llm_efficiency_bench").rglob("*.yaml"),
             *(REPO / "reproduce").glob("*.py"), REPO / "Makefile", REPO / "pyproject.toml"]
    named = [str(p.relative_to(REPO)) for p in files if re.search(r"\btoy\b", p.read_text())]
    assert not named, f"the suite names the toy paper: {named}"


def test_compose_and_prepare_work_for_a_paper_beside_the_suite(monkeypatch):
    """`tests.conftest.compose` (what the suite's own tests use) composes the toy from its config folder:
    command line over profile over schema default."""
    from llm_efficiency_bench.core.errors import ConfigError
    from tests.conftest import compose

    monkeypatch.setenv("BENCH_PAPERS_PATH", str(TOY))
    monkeypatch.syspath_prepend(str(TOY_ROOT))
    cfg = compose("toy", ["experiment=fit", "profile=smoke"])
    assert (cfg.experiment.points, cfg.experiment.slope, cfg.toy.noise) == (200, 2.0, 0.1)
    cfg = compose("toy", ["experiment=fit", "profile=smoke", "experiment.points=50", "toy.noise=0.5"])
    assert (cfg.experiment.points, cfg.toy.noise) == (50, 0.5)
    with pytest.raises(ConfigError, match="did you mean `batch`"):
        compose("toy", ["experiment=pi", "experiment.bach=3"])
