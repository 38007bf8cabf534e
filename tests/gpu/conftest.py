"""The CUDA tests run on a CUDA device when there is one, else they skip.

`GPU_TESTS_ON_CPU=1` runs the same tests on the CPU: for developing them on a machine without a GPU
(the comparisons then check the same code paths with CPU kernels, which is what a CPU can check)."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture
def device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("GPU_TESTS_ON_CPU") == "1":
        return "cpu"
    pytest.skip("no CUDA device (set GPU_TESTS_ON_CPU=1 to run these on the CPU)")
