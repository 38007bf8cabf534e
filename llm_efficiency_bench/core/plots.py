"""One figure style for every paper: same font, sizes, colours and dpi, PNG and PDF side by side.

Every figure of the suite goes through `figure()` and `save()`. Figures that can be redrawn from saved
data read their CSVs with `read_rows()`, which turns a missing or corrupt file into a `FigureDataError`
naming the file, so `python -m reproduce.report` can say which CSV is broken and carry on.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # no screen on the machines; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter  # noqa: E402

# Saving a PDF subsets fonts with fontTools, which logs every table it prunes at INFO; under the entry
# points' stdout logging that floods the run log.
logging.getLogger("fontTools").setLevel(logging.WARNING)

DPI = 160
STYLE: dict[str, Any] = {
    # DejaVu Sans ships with matplotlib: the same glyphs (and PNG bytes) on every machine, no font fallback.
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "figure.titlesize": 10,
    "legend.fontsize": 7.5,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "0.85",
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "errorbar.capsize": 2,
    "figure.dpi": 110,
    "savefig.dpi": DPI,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.formatter.useoffset": False,
    "pdf.fonttype": 42,  # embed TrueType: text in the PDFs stays selectable and editable
    "image.interpolation": "nearest",
}
# Size of annotations written on bars and points (smaller than tick labels, same everywhere).
ANNOTATION_SIZE = 7
# Method colours shared across papers' figures, so "streaming" is the same blue everywhere and an
# AdaptiveStep arm keeps its colour in every figure.
COLORS = {
    # StreamingLLM cache policies
    "dense": "#7f7f7f", "window": "#d62728", "recompute": "#2ca02c", "streaming": "#1f77b4",
    "newline": "#9467bd",
    # AdaptiveStep Best-of-N arms
    "confidence_prm": "#1f77b4", "newline_prm": "#9467bd", "random_prm": "#8c564b", "orm": "#ff7f0e",
    "majority": "#2ca02c", "random": "#7f7f7f", "pass_at_n": "#d62728", "oracle": "#17becf",
    "oracle_arith": "#bcbd22", "oracle_prm": "#e377c2", "min_confidence": "#aec7e8",
    # Fourier-VLM compressors
    "dct": "#1f77b4", "avgpool": "#ff7f0e", "drop": "#7f7f7f",
}
NEUTRAL = "#7f7f7f"
REFERENCE = dict(color="k", ls=":", lw=0.9)  # a paper's number drawn as a line


def apply_style() -> None:
    """Set the suite's rcParams (idempotent)."""
    plt.rcParams.update(STYLE)


def figure(width: float = 5.0, height: float = 3.2, ncols: int = 1, nrows: int = 1):
    """A figure with the suite's style applied; `axes` is always a 2-D array (`axes[row, col]`)."""
    apply_style()
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)


def color(name: str) -> str | None:
    """The suite colour of a method: an exact key first, else the first key contained in `name`."""
    if name in COLORS:
        return COLORS[name]
    return next((c for k, c in COLORS.items() if k in name), None)


def log_axis(ax, axis: str = "x", base: float = 10, ticks: Iterable[float] | None = None) -> None:
    """Log scale with plain tick labels ("64", "0.5"), not "2^6" / "6x10^1", and no cluttered minor labels."""
    getattr(ax, f"set_{axis}scale")("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if ticks is not None:
        target.set_major_locator(FixedLocator(list(ticks)))
    else:
        target.set_major_locator(LogLocator(base=base, subs=(1.0, 2.0, 5.0) if base == 10 else (1.0,)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def count_axis(ax, axis: str = "x") -> None:
    """Large counts as "1.5M" / "200k" instead of a "1e6" multiplier in the corner."""
    def label(v: float, _: Any) -> str:
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(v) >= scale:
                return f"{v / scale:g}{suffix}"
        return f"{v:g}"

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(FuncFormatter(label))


def save(fig, path_png: Path) -> list[Path]:
    """Save as PNG and PDF (same stem), close the figure, and return both paths."""
    path_png = Path(path_png)
    path_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    out = []
    for suffix in (".png", ".pdf"):
        p = path_png.with_suffix(suffix)
        # No dates or versions in the files: identical data gives identical bytes, run or report.
        meta = {"CreationDate": None} if suffix == ".pdf" else {"Software": None}
        fig.savefig(p, metadata=meta, dpi=DPI)
        out.append(p)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------ saved data
class FigureDataError(ValueError):
    """A CSV a figure is drawn from is missing, empty or corrupt; the message names the file."""


class Row(dict):
    """One CSV row; a missing column or a non-numeric cell raises FigureDataError naming the file."""

    source: str = "?"

    def __missing__(self, key: str) -> Any:
        raise FigureDataError(f"{self.source}: no column {key!r} (columns: {', '.join(self)})")

    def num(self, key: str) -> float:
        """The cell as a float (empty cells and 'nan' give NaN; anything else non-numeric is an error)."""
        v = self[key]
        if v == "":
            return math.nan
        try:
            return float(v)
        except ValueError:
            raise FigureDataError(f"{self.source}: column {key!r} holds {v!r}, not a number") from None


def read_rows(path: Path, required: Iterable[str] = ()) -> list[Row]:
    """Rows of a CSV written by `llm_efficiency_bench.core.tables.write_csv`, checked enough to draw from.

    Raises:
        FigureDataError: the file is missing, unreadable, has no rows, or lacks a `required` column.
    """
    path = Path(path)
    if not path.exists():
        raise FigureDataError(f"{path}: missing (the figure is drawn from it)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = []
            for i, r in enumerate(reader, start=2):  # line 1 is the header
                if None in r or None in r.values():  # DictReader's marks for too many / too few cells
                    raise FigureDataError(f"{path}: line {i} has {'too many' if None in r else 'too few'} "
                                          "cells (truncated or corrupt file)")
                row = Row(r)
                row.source = str(path)
                rows.append(row)
            columns = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise FigureDataError(f"{path}: not a readable CSV ({e})") from e
    if not rows:
        raise FigureDataError(f"{path}: no data rows")
    missing = [c for c in required if c not in columns]
    if missing:
        raise FigureDataError(f"{path}: missing column(s) {', '.join(map(repr, missing))} "
                              f"(columns: {', '.join(columns)})")
    return rows


def record_get(d: Any, *keys: str, default: Any = None) -> Any:
    """`d[k1][k2]...` of a record (or its config), or `default` where a key is absent (older records)."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def run_view(ctx: Any) -> dict[str, Any]:
    """What a figure drawer `draw(run_dir, record)` reads of a record, built from a running experiment's context.

    The runner draws a run's figures through the same drawer the report calls, before the record is written
    (the record then stores the same resolved config and the env captured at the start).
    """
    from omegaconf import OmegaConf

    return {"paper": ctx.paper, "experiment": ctx.experiment, "profile": ctx.profile,
            "config": OmegaConf.to_container(ctx.cfg, resolve=True), "env": dict(ctx.record.env),
            "metrics": {k: m.to_dict() for k, m in ctx.record.metrics.items()}}
