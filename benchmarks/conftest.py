"""Micro-benchmarks (`make bench`). Speed claims are ratios of paired rounds in one run on one machine.

Options: `--bench-rounds N` (timed rounds per ratio, `make bench BENCH_ROUNDS=N`). Benchmarks that read
text from the data folder are marked `needs_data`; without the data they fail with one line naming
`BENCH_DATA_DIR` (`make bench` leaves them out, saying so, when `BENCH_DATA_DIR` is unset). Every benchmark
starts with the session's torch thread count (torch's default, as the suite's runs use, unless
OMP_NUM_THREADS says otherwise): one that pins its own count must not change the next one's. The JSON file
gets a `suite` entry: the machine and code the run comes from (`llm_efficiency_bench.core.benchruns.machine_env`, taken at
the start and checked again at the end: code edited during the run makes it dirty).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import pytest
import torch
from omegaconf import OmegaConf

from llm_efficiency_bench.core.paths import CONFIG_DIR, REPO_ROOT

DEFAULT_ROUNDS = 5
_SESSION: dict = {"t": time.perf_counter(), "threads": torch.get_num_threads(), "env": None}


def pytest_addoption(parser):
    parser.addoption("--bench-rounds", type=int, default=DEFAULT_ROUNDS,
                     help=f"timed paired rounds per speed ratio (default {DEFAULT_ROUNDS})")


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_data: reads text from BENCH_DATA_DIR (make bench skips it, "
                                       "saying so, when BENCH_DATA_DIR is unset)")


def pytest_sessionstart(session):
    from llm_efficiency_bench.core.benchruns import machine_env

    _SESSION.update(t=time.perf_counter(), threads=torch.get_num_threads(), env=machine_env())


def pytest_benchmark_update_json(config, benchmarks, output_json):
    from llm_efficiency_bench.core.benchruns import machine_env
    from llm_efficiency_bench.core.records import now_iso

    env, end = dict(_SESSION["env"] or machine_env()), machine_env()
    env["git_dirty"] = bool(env["git_dirty"] or end["git_dirty"] or env["git_sha"] != end["git_sha"])
    env["torch_threads"] = _SESSION["threads"]
    output_json["suite"] = {"created": now_iso(), "rounds": config.getoption("--bench-rounds"),
                            "duration_s": round(time.perf_counter() - _SESSION["t"], 1), "env": env}


@contextmanager
def keep_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch threads, and leave `n` set whatever the block sets."""
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _session_threads():
    with keep_threads(_SESSION["threads"]):
        yield


@pytest.fixture(scope="session")
def rounds(pytestconfig) -> int:
    n = pytestconfig.getoption("--bench-rounds")
    if n < 1:
        raise pytest.UsageError(f"--bench-rounds {n}: needs at least one round (BENCH_ROUNDS)")
    return n


def data_text(rel: str) -> str:
    """The text of `<BENCH_DATA_DIR>/<rel>`; fails the benchmark with one line when it is not there."""
    import os
    from pathlib import Path

    root = os.environ.get("BENCH_DATA_DIR")
    if not root:
        pytest.fail(f"needs data: BENCH_DATA_DIR is not set (set it to the folder holding {rel})", pytrace=False)
    path = Path(root).expanduser() / rel
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as e:
        pytest.fail(f"needs data: cannot read {path} ({e.strerror}; BENCH_DATA_DIR={root})", pytrace=False)


@pytest.fixture(scope="session")
def smollm2():
    from llm_efficiency_bench.core.models import load_model

    torch.manual_seed(0)
    return load_model(OmegaConf.load(CONFIG_DIR / "model/smollm2_135m.yaml"), dtype="float32")


@pytest.fixture(scope="session")
def smollm2_bf16():
    from llm_efficiency_bench.core.models import load_model

    return load_model(OmegaConf.load(CONFIG_DIR / "model/smollm2_135m.yaml"), dtype="bfloat16")
