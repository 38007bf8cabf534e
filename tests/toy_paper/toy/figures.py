"""Toy figures, drawn from the CSVs each experiment writes: the runner calls a drawer after the experiment
returns, and `python -m reproduce.report` calls the same drawer on a saved record folder.

* `fit` -> `fit.png` from `points.csv`: the sampled points and the fitted line.
* `pi` -> `pi.png` from `pi_running.csv`: the running estimate against pi.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llm_efficiency_bench.core.plots import REFERENCE, figure, log_axis, read_rows, record_get, save


def draw_fit(run_dir: Path, record: dict[str, Any]) -> list[Path]:
    """The points and the fitted line of a `fit` run (`points.csv`)."""
    rows = read_rows(Path(run_dir) / "points.csv", required=("x", "y", "fit"))
    rows = sorted(rows, key=lambda r: r.num("x"))
    slope = record_get(record, "metrics", "slope", "value")
    fig, ax = figure(4.0, 3.0)
    a = ax[0, 0]
    a.scatter([r.num("x") for r in rows], [r.num("y") for r in rows], s=3, alpha=0.4, label="samples")
    a.plot([r.num("x") for r in rows], [r.num("fit") for r in rows], color="k",
           label="least squares" + (f" (slope {slope:.3f})" if slope is not None else ""))
    a.set_xlabel("x")
    a.set_ylabel("y")
    a.legend()
    return save(fig, Path(run_dir) / "fit.png")


def draw_pi(run_dir: Path, record: dict[str, Any]) -> list[Path]:
    """The running estimate of a `pi` run (`pi_running.csv`) against pi."""
    rows = read_rows(Path(run_dir) / "pi_running.csv", required=("samples", "pi"))
    fig, ax = figure(4.0, 3.0)
    a = ax[0, 0]
    a.plot([r.num("samples") for r in rows], [r.num("pi") for r in rows], marker="o", label="estimate")
    a.axhline(math.pi, **REFERENCE, label="pi")
    if len(rows) > 1:
        log_axis(a, "x")
    a.set_xlabel("samples")
    a.set_ylabel("4 x share inside the quarter disc")
    a.legend()
    return save(fig, Path(run_dir) / "pi.png")
