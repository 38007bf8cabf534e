"""Fourier-VLM's vision-token compressor and equal-budget baselines.

Fourier-VLM Sec. 3 (Method): the vision features [B, N, C] of an H x W patch grid are reshaped to a grid,
transformed by an orthonormal 2D DCT-II over the spatial axes, cropped to the top-left kh x kw low-frequency
block, and brought back to a coarse kh x kw spatial grid by the inverse DCT of that size; the LLM receives
the kh*kw tokens of this low-passed, downsampled grid (not raw coefficients).

Scale: with the orthonormal crop-then-inverse, a constant field grows by sqrt(H W / (kh kw)) (= N/k on a
square grid: 3.0 becomes 6.0 at 24 -> 12). `rescale=True` multiplies by the inverse factor, which a
training-free use needs; the released checkpoints were fine-tuned per budget without it.

Baselines with the same budget: 2D average pooling to kh x kw (adaptive windows) and uniform token
dropping (keep the kh x kw tokens on an evenly spaced sub-grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.fourier_vlm import dct as dct_mod

METHODS = ("dct", "dct_dense", "avgpool", "drop", "none")


def infer_grid(n_tokens: int, grid: tuple[int, int] | None, setting: str = "fourier.grid") -> tuple[int, int]:
    """The (H, W) patch grid of `n_tokens` features: `grid` if given (checked), else a square root.

    Raises:
        ConfigError: when `grid` does not match `n_tokens` or `n_tokens` is not a square and no grid is given.
    """
    if grid is not None:
        h, w = int(grid[0]), int(grid[1])
        if h * w != n_tokens or h < 1 or w < 1:
            raise ConfigError(setting, f"grid {h}x{w} holds {h * w} tokens but the features have {n_tokens}")
        return h, w
    side = math.isqrt(n_tokens)
    if side * side != n_tokens:
        raise ConfigError(setting, f"{n_tokens} tokens are not a square grid; pass the grid (H, W) explicitly")
    return side, side


def resolve_keep(grid: tuple[int, int], k: int | None = None, kh: int | None = None,
                 kw: int | None = None, setting: str = "fourier.k") -> tuple[int, int]:
    """The kept block (kh, kw) on an H x W grid from either `k` (square grids) or `kh` and `kw`.

    Raises:
        ConfigError: k/kh/kw missing, non-positive, larger than the grid, or `k` alone on a non-square grid.
    """
    h, w = grid
    if kh is not None or kw is not None:
        if kh is None or kw is None:
            raise ConfigError(f"{setting}h/{setting}w", "give both kh and kw (or k alone on a square grid)")
        keep = (int(kh), int(kw))
        where = f"{setting}h/{setting}w"
    elif k is not None:
        if h != w:
            raise ConfigError(f"{setting}h/{setting}w", f"grid {h}x{w} is not square: a single k={k} is "
                              "ambiguous; give kh and kw (or a ratio per axis)")
        keep = (int(k), int(k))
        where = setting
    else:
        raise ConfigError(setting, "no budget given: set k (square grids) or kh and kw")
    if keep[0] < 1 or keep[1] < 1:
        raise ConfigError(where, f"kept block {keep[0]}x{keep[1]} must be at least 1x1")
    if keep[0] > h or keep[1] > w:
        raise ConfigError(where, f"kept block {keep[0]}x{keep[1]} is larger than the {h}x{w} grid")
    return keep


def _to_grid(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, grid[0], grid[1], c)  # (B, H, W, C)


def dct_lowpass(x: torch.Tensor, grid: tuple[int, int], keep: tuple[int, int], rescale: bool = False,
                dense: bool = False) -> torch.Tensor:
    """Fourier-VLM's compressor: DCT-II -> keep top-left block -> inverse DCT of the block size.

    Args:
        x: features (B, N, C), row-major over an H x W grid (N = H * W).
        grid: (H, W).
        keep: (kh, kw) low-frequency block to keep.
        rescale: multiply by sqrt(kh kw / (H W)) so a constant field keeps its value (training-free use).
        dense: use the dense DCT-matrix path instead of the FFT path (benchmarks only).

    Returns:
        (B, kh * kw, C) tokens of the low-passed kh x kw grid, in the input dtype.
    """
    out_dtype = x.dtype
    g = _to_grid(x.float(), grid)  # (B, H, W, C) fp32 (Sec. 3: the DCT runs in fp32)
    fwd, inv = (dct_mod.dctn_dense, dct_mod.idctn_dense) if dense else (dct_mod.dctn, dct_mod.idctn)
    # Separable transform, cropped after each axis: only the kept rows go through the second axis.
    # (Same result as crop(DCT2(g)); both paths do it, so the benchmark compares like with like.)
    low = fwd(g, dims=(1,))[:, : keep[0]]  # (B, kh, W, C): row frequencies 0..kh-1
    low = fwd(low, dims=(2,))[:, :, : keep[1]]  # (B, kh, kw, C): top-left block, (0, 0) = DC
    y = inv(low, dims=(1, 2))  # (B, kh, kw, C) coarse spatial grid
    if rescale:
        y = y * math.sqrt(keep[0] * keep[1] / (grid[0] * grid[1]))
    return y.reshape(x.shape[0], keep[0] * keep[1], x.shape[2]).to(out_dtype)  # (B, kh*kw, C)


def avg_pool(x: torch.Tensor, grid: tuple[int, int], keep: tuple[int, int]) -> torch.Tensor:
    """Equal-budget baseline: 2D adaptive average pooling of the grid to kh x kw. (B, N, C) -> (B, kh*kw, C)."""
    g = _to_grid(x, grid).permute(0, 3, 1, 2)  # (B, C, H, W)
    y = F.adaptive_avg_pool2d(g.float(), keep).to(x.dtype)  # (B, C, kh, kw)
    return y.flatten(2).transpose(1, 2)  # (B, kh*kw, C)


def uniform_indices(n: int, k: int) -> torch.Tensor:
    """k evenly spaced indices in [0, n), centred in their cells (k = n keeps all)."""
    return torch.floor((torch.arange(k, dtype=torch.float64) + 0.5) * n / k).long()


def uniform_drop(x: torch.Tensor, grid: tuple[int, int], keep: tuple[int, int]) -> torch.Tensor:
    """Equal-budget baseline: keep the tokens of an evenly spaced kh x kw sub-grid, drop the rest."""
    rows = uniform_indices(grid[0], keep[0]).to(x.device)
    cols = uniform_indices(grid[1], keep[1]).to(x.device)
    g = _to_grid(x, grid)  # (B, H, W, C)
    y = g.index_select(1, rows).index_select(2, cols)  # (B, kh, kw, C)
    return y.reshape(x.shape[0], keep[0] * keep[1], x.shape[2])


@dataclass
class TokenCompressor:
    """A configured compressor: method and budget, applied to (B, N, C) features on an H x W grid.

    Args:
        method: "dct" (Fourier-VLM, FFT path), "dct_dense" (same, dense matrices), "avgpool", "drop", "none".
        k: side of the kept square block (square grids).
        kh, kw: kept block per axis (any grid); override k.
        rescale: DCT only: the k/N factor for training-free use.
        grid: (H, W) of the input; None infers a square grid from N.
        setting: config prefix named in errors.
    """

    method: str = "dct"
    k: int | None = None
    kh: int | None = None
    kw: int | None = None
    rescale: bool = False
    grid: tuple[int, int] | None = None
    setting: str = "fourier"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"{self.setting}.method", f"unknown compressor {self.method!r}; choose one of {METHODS}")

    def keep_for(self, grid: tuple[int, int]) -> tuple[int, int]:
        if self.method == "none":
            return grid
        return resolve_keep(grid, self.k, self.kh, self.kw, f"{self.setting}.k")

    def out_tokens(self, n_tokens: int, grid: tuple[int, int] | None = None) -> int:
        """Number of tokens after compression (what the prompt's image placeholders must count)."""
        g = infer_grid(n_tokens, grid or self.grid, f"{self.setting}.grid")
        kh, kw = self.keep_for(g)
        return kh * kw

    def __call__(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, N, C) -> (B, kh*kw, C)."""
        if x.ndim != 3:
            raise ValueError(f"expected features (B, N, C), got shape {tuple(x.shape)}")
        g = infer_grid(x.shape[1], grid or self.grid, f"{self.setting}.grid")
        if self.method == "none":
            return x
        keep = self.keep_for(g)
        if self.method in ("dct", "dct_dense"):
            return dct_lowpass(x, g, keep, self.rescale, dense=self.method == "dct_dense")
        if self.method == "avgpool":
            return avg_pool(x, g, keep)
        return uniform_drop(x, g, keep)
