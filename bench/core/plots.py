"""One figure style for every paper: same fonts and sizes, PNG and PDF side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on the machines; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.dpi": 110,
    "savefig.dpi": 160,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
# Method colours shared across papers' figures, so "streaming" is the same blue everywhere.
COLORS = {
    "dense": "#7f7f7f", "window": "#d62728", "recompute": "#2ca02c", "streaming": "#1f77b4",
    "newline": "#9467bd",
}


def figure(width: float = 5.0, height: float = 3.2, ncols: int = 1, nrows: int = 1):
    """A figure with the suite's style applied."""
    plt.rcParams.update(STYLE)
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)


def save(fig, path_png: Path) -> list[Path]:
    """Save as PNG and PDF (same stem), close the figure, and return both paths."""
    path_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    out = []
    for suffix in (".png", ".pdf"):
        p = path_png.with_suffix(suffix)
        # A fixed creation date keeps PDFs byte-stable between identical runs.
        meta = {"CreationDate": None} if suffix == ".pdf" else {"Software": None}
        fig.savefig(p, metadata=meta)
        out.append(p)
    plt.close(fig)
    return out
