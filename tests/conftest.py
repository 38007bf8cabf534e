"""Shared fixtures. The data directory comes from BENCH_DATA_DIR (CI: ../shared/data); tests that need it
skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "llm_efficiency_bench" / "configs"

if not os.environ.get("BENCH_DATA_DIR") and (REPO.parent / "shared" / "data").is_dir():
    os.environ["BENCH_DATA_DIR"] = str((REPO.parent / "shared" / "data").resolve())


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def data_dir() -> Path:
    d = os.environ.get("BENCH_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("BENCH_DATA_DIR not set: the real-data tests need ../shared/data")
    return Path(d)


def compose(config_name: str, overrides: list[str]):
    """Compose the real Hydra config as the entry points do: overrides checked (`core/overrides.py`), then
    the experiment's settings for the profile (`core/experiment.py`). A paper kept beside the suite
    (`BENCH_PAPERS_PATH`) is composed from its own config folder."""
    from hydra import compose as h_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from llm_efficiency_bench.core.experiment import specialise
    from llm_efficiency_bench.core.overrides import prepare
    from llm_efficiency_bench.core.paths import config_dir_of

    config_dir = config_dir_of(config_name)
    checked = prepare(config_name, overrides, config_dir)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = h_compose(config_name=config_name, overrides=checked)
    return specialise(cfg, checked)


def patch_experiment(mp, fn) -> None:
    """Make the runner run `fn` whatever experiment the config names (`experiment.fn`); the config comes from
    `compose`, so its settings are already those of the experiment it names."""
    from llm_efficiency_bench.core import runner

    mp.setattr(runner, "resolve_experiment", lambda spec: fn)
