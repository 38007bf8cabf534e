"""Device-aware timing (llm_efficiency_bench.core.timing.DeviceClock): perf_counter on CPU, CUDA events on CUDA."""

from __future__ import annotations

import time

import pytest
import torch

from llm_efficiency_bench.core.timing import DeviceClock, time_call, time_interleaved


def test_cpu_clock_times_host_work():
    clock = DeviceClock("cpu")
    assert clock.kind == "perf_counter" and not clock.cuda
    assert 4.0 <= clock.time(lambda: time.sleep(0.005)) < 500
    t = time_call(lambda: time.sleep(0.002), repeats=3, warmup=0, device="cpu")
    assert t.n == 3 and t.median_ms >= 1.5
    both = time_interleaved({"a": lambda: None, "b": lambda: time.sleep(0.004)}, repeats=3, device="cpu")
    assert both["b"].median_ms > both["a"].median_ms


@pytest.mark.cuda
def test_cuda_events_time_the_queued_gpu_work(device):
    if device != "cuda":
        pytest.skip("CUDA events need a CUDA device")
    clock = DeviceClock("cuda")
    assert clock.kind == "CUDA events"
    torch.cuda.synchronize()
    host0 = time.perf_counter()
    a = clock.mark()
    torch.cuda._sleep(200_000_000)  # a GPU-side spin of ~0.1 s; the launch itself returns at once
    b = clock.mark()
    host_ms = (time.perf_counter() - host0) * 1e3
    gpu_ms = clock.ms(a, b)
    assert gpu_ms > 20 and gpu_ms > 5 * host_ms  # events saw the work that a host clock would have missed
