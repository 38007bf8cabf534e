"""The compressor: shapes, the low-pass definition, the k/N scale, baselines and errors."""

from __future__ import annotations

import pytest
import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.fourier_vlm.compress import TokenCompressor, avg_pool, uniform_drop, uniform_indices
from llm_efficiency_bench.fourier_vlm.dct import dctn


def test_output_is_inverse_of_kept_block():
    x = torch.randn(2, 576, 8, generator=torch.Generator().manual_seed(1))
    for k in (16, 12, 8, 6):
        y = TokenCompressor("dct", k=k)(x)
        assert y.shape == (2, k * k, 8)
        coef_in = dctn(x.view(2, 24, 24, 8), dims=(1, 2))[:, :k, :k]
        coef_out = dctn(y.view(2, k, k, 8), dims=(1, 2))
        assert torch.allclose(coef_in, coef_out, atol=1e-4)


def test_constant_scale_matches_note():
    x = torch.full((1, 576, 2), 3.0)
    assert torch.allclose(TokenCompressor("dct", k=12)(x), torch.full((1, 144, 2), 6.0), atol=1e-5)
    assert torch.allclose(TokenCompressor("dct", k=12, rescale=True)(x), torch.full((1, 144, 2), 3.0), atol=1e-5)
    y = TokenCompressor("dct", kh=4, kw=9, rescale=True)(torch.full((1, 12 * 18, 1), -2.0), (12, 18))
    assert torch.allclose(y, torch.full_like(y, -2.0), atol=1e-5)


def test_full_block_is_identity_and_paths_agree():
    x = torch.randn(3, 35, 5)
    assert torch.allclose(TokenCompressor("dct", kh=5, kw=7)(x, (5, 7)), x, atol=1e-5)
    a = TokenCompressor("dct", kh=3, kw=4)(x, (5, 7))
    b = TokenCompressor("dct_dense", kh=3, kw=4)(x, (5, 7))
    assert torch.allclose(a, b, atol=1e-5)


def test_dtype_preserved_bf16():
    x = torch.randn(1, 576, 4).to(torch.bfloat16)
    y = TokenCompressor("dct", k=8)(x)
    assert y.dtype == torch.bfloat16
    ref = TokenCompressor("dct", k=8)(x.float())
    assert torch.allclose(y.float(), ref, atol=0.05)


def test_baselines():
    x = torch.arange(16.0).view(1, 16, 1)  # 4x4 grid with values row*4 + col
    pooled = avg_pool(x, (4, 4), (2, 2))
    assert pooled.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    dropped = uniform_drop(x, (4, 4), (2, 2))
    assert dropped.flatten().tolist() == [5.0, 7.0, 13.0, 15.0]  # rows/cols 1 and 3 (cell centres)
    assert uniform_indices(24, 8).tolist() == [1, 4, 7, 10, 13, 16, 19, 22]
    assert uniform_indices(24, 24).tolist() == list(range(24))
    for m in ("avgpool", "drop"):
        assert TokenCompressor(m, k=6)(torch.randn(2, 576, 3)).shape == (2, 36, 3)


def test_out_tokens():
    assert TokenCompressor("dct", k=8).out_tokens(576) == 64
    assert TokenCompressor("none").out_tokens(576) == 576
    assert TokenCompressor("avgpool", kh=10, kw=15).out_tokens(600, (20, 30)) == 150


@pytest.mark.parametrize("kwargs,call,setting", [
    (dict(method="dct", k=30), dict(n=576, grid=None), "fourier.k"),
    (dict(method="dct", k=0), dict(n=576, grid=None), "fourier.k"),
    (dict(method="dct", k=8), dict(n=600, grid=(20, 30)), "fourier.kh/fourier.kw"),
    (dict(method="dct", kh=8), dict(n=600, grid=(20, 30)), "fourier.kh/fourier.kw"),
    (dict(method="dct", kh=8, kw=31), dict(n=600, grid=(20, 30)), "fourier.kh/fourier.kw"),
    (dict(method="dct", k=4), dict(n=600, grid=None), "fourier.grid"),
    (dict(method="dct", k=4), dict(n=576, grid=(20, 30)), "fourier.grid"),
])
def test_errors_name_the_setting(kwargs, call, setting):
    comp = TokenCompressor(**kwargs)
    with pytest.raises(ConfigError) as e:
        comp(torch.zeros(1, call["n"], 2), call["grid"])
    assert e.value.setting == setting
    assert f"`{setting}`" in str(e.value)


def test_unknown_method():
    with pytest.raises(ConfigError, match="unknown compressor 'fft'"):
        TokenCompressor("fft", k=4)
