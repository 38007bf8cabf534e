"""Micro-benchmarks (`make bench`). Speed claims are ratios measured in one run on one machine."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bench.core.paths import REPO_ROOT


@pytest.fixture(scope="session")
def smollm2():
    from bench.core.models import load_model

    torch.manual_seed(0)
    return load_model(OmegaConf.load(REPO_ROOT / "configs/model/smollm2_135m.yaml"), dtype="float32")


@pytest.fixture(scope="session")
def smollm2_bf16():
    from bench.core.models import load_model

    return load_model(OmegaConf.load(REPO_ROOT / "configs/model/smollm2_135m.yaml"), dtype="bfloat16")
