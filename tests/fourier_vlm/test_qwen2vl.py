"""Qwen2-VL integration on a tiny random-weight model: per-image compression, grid_thw, M-RoPE, generate."""

from __future__ import annotations

import inspect

import pytest
import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.fourier_vlm.qwen2vl import (apply_qwen2vl_compressor, compressed_grid_thw, compressed_token_count,
                                       fake_pixels, keep_sides, prompt_ids, random_qwen2vl)

GRID = torch.tensor([[1, 16, 24], [1, 8, 8]])  # two images; merged grids 8x12 and 4x4


@pytest.fixture(scope="module")
def model():
    return random_qwen2vl(seed=0)


def test_kept_sides_and_grid():
    assert keep_sides(8, 12, 2 / 3) == (5, 8)
    assert keep_sides(4, 4, 2 / 3) == (2, 2)
    assert keep_sides(1, 3, 0.5) == (1, 1)
    assert compressed_grid_thw(GRID, 2 / 3, 2).tolist() == [[1, 10, 16], [1, 4, 4]]
    assert compressed_token_count(GRID, 2 / 3, 2) == [40, 4]
    with pytest.raises(ConfigError) as e:
        keep_sides(4, 4, 1.5)
    assert e.value.setting == "fourier.ratio"


def test_features_compressed_per_image(model):
    pv = fake_pixels(GRID, model)
    apply_qwen2vl_compressor(model, None)
    with torch.no_grad():
        full = model.model.get_image_features(pv, GRID).pooler_output
    apply_qwen2vl_compressor(model, 2 / 3)
    try:
        sig = inspect.signature(model.model._fourier_originals["get_image_features"])
        assert inspect.signature(model.model.get_image_features) == sig
        with torch.no_grad():
            comp = model.model.get_image_features(pv, GRID).pooler_output
    finally:
        apply_qwen2vl_compressor(model, None)
    assert [f.shape[0] for f in full] == [96, 16]
    assert [f.shape[0] for f in comp] == [40, 4]
    # the DC component survives the orthonormal low-pass; the mean grows by sqrt(h w / (kh kw)) (the k/N factor)
    scale = (40 / 96) ** 0.5
    assert torch.allclose(comp[0].mean(0) * scale, full[0].mean(0), atol=1e-5)


def test_mrope_positions_follow_compressed_grid(model):
    apply_qwen2vl_compressor(model, 0.5)  # 8x12 -> 4x6, 4x4 -> 2x2
    try:
        counts = compressed_token_count(GRID, 0.5, 2)
        ids, types = prompt_ids(model, counts, [5, 6])
        pos, _ = model.model.get_rope_index(ids, types, GRID)  # (3, 1, L)
    finally:
        apply_qwen2vl_compressor(model, None)
    img = pos[:, 0, 1:1 + counts[0]]  # first image's tokens
    h, w = img[1] - img[1].min(), img[2] - img[2].min()
    assert counts[0] == 24
    assert h.view(4, 6).tolist() == [[r] * 6 for r in range(4)]
    assert w.view(4, 6).tolist() == [list(range(6))] * 4


@pytest.mark.parametrize("ratio", [None, 2 / 3])
def test_generate(model, ratio):
    apply_qwen2vl_compressor(model, ratio)
    try:
        counts = [96, 16] if ratio is None else compressed_token_count(GRID, ratio, 2)
        ids, types = prompt_ids(model, counts, [5, 6, 7])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=fake_pixels(GRID, model),
                             image_grid_thw=GRID, mm_token_type_ids=types, max_new_tokens=3, min_new_tokens=3,
                             do_sample=False)
        assert out.shape == (1, ids.shape[1] + 3)
        if ratio is not None:  # the uncompressed placeholder count no longer matches
            bad, bad_types = prompt_ids(model, [96, 16], [5])
            with pytest.raises(Exception, match="do not match"):
                model(input_ids=bad, pixel_values=fake_pixels(GRID, model), image_grid_thw=GRID,
                      mm_token_type_ids=bad_types)
    finally:
        apply_qwen2vl_compressor(model, None)
