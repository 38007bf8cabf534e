"""Fourier-VLM compressor: FFT (Makhoul) path vs dense DCT matrices over grid sizes 24..96.

    make bench     (or: python -m pytest -q benchmarks/test_fourier_dct.py -m benchmark --benchmark-enable)

One image of CLIP-L features (C = 1024), kept block k = N/3 per axis (24 -> 8, as 576 -> 64 tokens). The FFT
path is O(N log N) per line, the dense path O(N^2); which is faster at a given N is what this measures
(the paper's note: at N = 24 the dense product wins; the asymptotics matter for large grids).
"""

from __future__ import annotations

import pytest
import torch

from llm_efficiency_bench.fourier_vlm.compress import TokenCompressor

GRIDS = [24, 48, 72, 96]


@pytest.mark.benchmark(group="fourier_dct")
@pytest.mark.parametrize("method", ["dct", "dct_dense"])
@pytest.mark.parametrize("n", GRIDS)
def test_compressor_scaling(benchmark, n, method):
    torch.set_num_threads(1)  # per core; the conftest gives the next benchmark the session's count back
    x = torch.randn(1, n * n, 1024, generator=torch.Generator().manual_seed(n))
    comp = TokenCompressor(method, k=n // 3)
    benchmark.extra_info.update({"grid": n, "tokens_in": n * n, "tokens_out": (n // 3) ** 2, "channels": 1024})
    y = benchmark.pedantic(comp, args=(x,), rounds=5, iterations=1, warmup_rounds=1)
    ref = TokenCompressor("dct_dense" if method == "dct" else "dct", k=n // 3)(x)
    assert torch.allclose(y, ref, atol=1e-4)
