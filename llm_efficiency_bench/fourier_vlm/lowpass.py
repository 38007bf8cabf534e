"""Fourier-VLM low-pass check (Sec. 3, Fig. 2 of the paper's motivation): how much of a real photo's
patch features a k x k DCT low-pass keeps, against average pooling and uniform dropping at the same
token budget. `python -m reproduce.fourier_vlm experiment=lowpass profile=cpu`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.plots import figure
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.fourier_vlm import figures
from llm_efficiency_bench.fourier_vlm.compress import TokenCompressor, avg_pool, uniform_drop, uniform_indices
from llm_efficiency_bench.core.validate import Rule, Text, pos_int
from llm_efficiency_bench.fourier_vlm.dct import dctn, idctn
from llm_efficiency_bench.fourier_vlm.experiments import _budgets


# --------------------------------------------------------------------------------------------------- lowpass
def _photo_patches(path: Any, side_px: int, patch: int) -> torch.Tensor:
    """A photo, centre-cropped and resized to side_px, as (1, (side/patch)^2, patch*patch*3) patch vectors."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    s = min(img.size)
    left, top = (img.width - s) // 2, (img.height - s) // 2
    img = img.crop((left, top, left + s, top + s)).resize((side_px, side_px), Image.BICUBIC)
    x = torch.tensor(list(img.getdata()), dtype=torch.float32).view(side_px, side_px, 3) / 255.0  # (H, W, 3)
    n = side_px // patch
    p = x.view(n, patch, n, patch, 3).permute(0, 2, 1, 3, 4)  # (n, n, patch, patch, 3)
    return p.reshape(1, n * n, patch * patch * 3)  # (1, N, C) with C = patch*patch*3


def _patches_to_image(tokens: torch.Tensor, k: int, patch: int) -> torch.Tensor:
    """(1, k*k, patch*patch*3) -> (k*patch, k*patch, 3) image, clipped to [0, 1]."""
    p = tokens.view(k, k, patch, patch, 3).permute(0, 2, 1, 3, 4)
    return p.reshape(k * patch, k * patch, 3).clamp(0, 1)


@dataclass
class LowpassSettings:
    """What the low-pass keeps (`experiment.*`)."""

    image: str = setting("dog.jpg", Text(), "a photo under <data_dir>/images/")
    image_side: int = setting(336, pos_int(hi=8192), "pixels per side the photo is cut to (CLIP's 336)")


LOWPASS_RULES = [Rule(("image_side", "/fourier.base_side"), lambda px, side: px % side == 0,
                      "{0} px is not a multiple of the {1}x{1} patch grid", "image_side")]


@experiment(settings=LowpassSettings, rules=LOWPASS_RULES, figures=figures.draw_lowpass)
def lowpass(ctx: RunContext) -> None:
    """What the low-pass keeps: a real photo as 24x24 patch tokens, compressed at each k by each method."""
    from llm_efficiency_bench.core.paths import data_dir

    e, cfg = ctx.cfg.experiment, ctx.cfg
    path = data_dir(cfg.data_dir) / "images" / str(e.image)
    if not path.exists():
        raise ConfigError("experiment.image", f"{path} does not exist")
    side = int(cfg.fourier.base_side)
    side_px = int(e.image_side)
    patch = side_px // side
    x = _photo_patches(path, side_px, patch)  # (1, 576, 588): each token is one 14x14 RGB patch
    grid = (side, side)
    ks = _budgets(ctx)
    coef = dctn(x.view(1, side, side, -1), dims=(1, 2))  # (1, 24, 24, C)
    total_energy = float((coef ** 2).sum())
    methods = {
        "dct": lambda k: TokenCompressor("dct", k=k, rescale=True)(x, grid),
        "avgpool": lambda k: avg_pool(x, grid, (k, k)),
        "drop": lambda k: uniform_drop(x, grid, (k, k)),
    }
    rows = []
    fig, ax = figure(2.0 * (len(ks) + 1), 2.1 * len(methods), ncols=len(ks) + 1, nrows=len(methods))
    for r, (name, fn) in enumerate(methods.items()):
        ax[r, 0].imshow(_patches_to_image(x, side, patch).numpy())
        ax[r, 0].set_title(f"original {side}x{side} patches" if r == 0 else "original", fontsize=7)
        for cidx, k in enumerate(ks, start=1):
            y = fn(k)  # (1, k*k, C)
            if y.shape[1] != k * k:
                raise RuntimeError(f"{name} returned {y.shape[1]} tokens for k={k}")
            recon = _upsample(name, y, k, side)  # (1, 576, C) back on the full grid
            err = float((recon - x).norm() / x.norm())
            row = {"method": name, "k": k, "tokens": k * k, "rel. L2 error": err}
            if name == "dct":
                kept = float((coef[:, :k, :k] ** 2).sum()) / total_energy
                row["energy kept"] = kept
                ctx.metric(f"energy_kept.{k * k}", kept, "fraction", "higher", note=f"DCT block {k}x{k} of {side}x{side}")
            ctx.metric(f"recon_rel_err.{name}.{k * k}", err, "fraction", "lower",
                       note="rel. L2 error of the kept tokens brought back to the full grid")
            rows.append(row)
            ax[r, cidx].imshow(_patches_to_image(y, k, patch).numpy(), interpolation="nearest")
            ax[r, cidx].set_title(f"{name}: k={k} ({k * k} tokens)", fontsize=7)
    for a in ax.flat:
        a.set_xticks([])
        a.set_yticks([])
        a.grid(False)
    ctx.figure("lowpass", fig)
    ctx.table("lowpass", f"What each compressor keeps of {path.name} ({side}x{side} patches of {patch}x{patch} px)",
              rows, ["tokens are raw RGB patches (the compressor is linear and acts per channel, as on CLIP "
                     "features); DCT shown with the k/N rescale; reconstruction: DCT zero-padded inverse, "
                     "pooling and dropping nearest-neighbour upsampling"], digits=4)
    # The picture above needs the photo, so only the run draws it; the error curves come from lowpass.csv
    # through the code the report uses.


def _upsample(method: str, y: torch.Tensor, k: int, side: int) -> torch.Tensor:
    """Bring k*k tokens back to the side x side grid with each method's natural inverse. (1, k*k, C) -> (1, N, C)."""
    c = y.shape[-1]
    g = y.view(1, k, k, c)
    if method == "dct":  # y was rescaled by k/N: undo, then zero-pad the spectrum and invert (exact low-pass)
        coef = dctn(g * (side / k), dims=(1, 2))
        full = torch.zeros(1, side, side, c)
        full[:, :k, :k] = coef
        return idctn(full, dims=(1, 2)).view(1, side * side, c)
    idx = torch.clamp(((torch.arange(side) + 0.5) * k / side).long(), max=k - 1)  # nearest coarse cell
    if method == "drop":
        # each dropped token takes the value of the nearest kept one
        kept = uniform_indices(side, k)
        idx = torch.tensor([int(torch.argmin((kept - i).abs())) for i in range(side)])
    return g.index_select(1, idx).index_select(2, idx).view(1, side * side, c)
