"""AdaptiveStep figures drawn from the CSVs each experiment writes.

One drawer per experiment, declared with it (`@experiment(figures=...)`): the runner calls it on the run's
folder after the experiment returns and `python -m reproduce.report` on a saved record folder, so a figure
from a run and from the report come out of the same code and data:

* `bon`, `bon_released` -> `draw_bon`: `bon_accuracy_vs_n.png` from `bon_long.csv` (arm, n, seed, accuracy)
  and `bon_ci.csv` (bootstrap interval over questions): Best-of-N accuracy vs N per arm (the paper's
  Figs. 4-5 shape).
* `cost` -> `draw_cost`: `split_token_types.png` from `split_token_types.csv`: which token types the
  confidence split points fall on, against all sampled tokens.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

from llm_efficiency_bench.core.plots import COLORS, NEUTRAL, figure, log_axis, read_rows, save

# Drawing order (and legend order) of the Best-of-N arms; the `_mean` / `_last` aggregation variants are in
# the table and CSV but left out of the figure, as in the paper's figures (min aggregation only).
ARMS = ("confidence_prm", "newline_prm", "random_prm", "orm", "oracle_prm", "min_confidence", "majority", "random",
        "oracle_arith", "oracle", "pass_at_n")
ARM_LABELS = {"confidence_prm": "confidence-PRM (AdaptiveStep)", "newline_prm": "newline-PRM", "random_prm": "random-split PRM",
              "orm": "ORM", "oracle_prm": "PRM on oracle labels", "majority": "majority vote", "random": "random pick",
              "oracle": "exact step checker", "min_confidence": "policy's min token confidence", "oracle_arith": "arithmetic-only checker",
              "pass_at_n": "pass@N (oracle)"}
BON_COLUMNS = ("arm", "n", "seed", "accuracy")
CI_COLUMNS = ("arm", "n", "mean", "ci_lo", "ci_hi", "se")


def bon_rows(results: dict[str, dict[int, list[float]]], seeds: list[int]) -> list[dict[str, Any]]:
    """Long-form rows (arm, n, seed, accuracy) of `results[arm][n] = [accuracy per seed]`, for `bon_long.csv`."""
    return [{"arm": arm, "n": n, "seed": seed, "accuracy": acc}
            for arm, by_n in results.items() for n, accs in by_n.items() for seed, acc in zip(seeds, accs)]


def _ci_bands(ci_csv: Path) -> dict[str, dict[int, tuple[float, float]]]:
    """arm -> N -> (ci_lo, ci_hi) from `bon_ci.csv`; empty when the record has none (older records)."""
    if not ci_csv.exists():
        return {}
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for r in read_rows(ci_csv, CI_COLUMNS):
        out.setdefault(r["arm"], {})[int(r.num("n"))] = (r.num("ci_lo"), r.num("ci_hi"))
    return out


def bon_figure(long_csv: Path, out_png: Path, title: str) -> list[Path]:
    """Best-of-N accuracy vs N per arm: mean over seeds, shaded with the bootstrap 95% interval over questions
    from `bon_ci.csv` beside it (older records without it: +-1 sd over seeds).

    Args:
        long_csv: `bon_long.csv` (arm, n, seed, accuracy in %).
        out_png: where to write (a PDF goes beside it).
        title: start of the title; the number of seeds is appended.
    """
    rows = read_rows(long_csv, BON_COLUMNS)
    acc: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        acc.setdefault(r["arm"], {}).setdefault(int(r.num("n")), []).append(r.num("accuracy"))
    arms = [a for a in ARMS if a in acc] + [a for a in acc if a not in ARMS and not a.endswith(("_mean", "_last"))]
    ns = sorted({n for by_n in acc.values() for n in by_n})
    seeds = len({r["seed"] for r in rows})
    bands = _ci_bands(long_csv.parent / "bon_ci.csv")
    from matplotlib.patches import Patch

    fig, axes = figure(6.4, 3.6)
    ax = axes[0, 0]
    handles, labels = [], []
    for arm in arms:
        xs = sorted(acc[arm])
        m = np.array([statistics.fmean(acc[arm][n]) for n in xs])
        sd = np.array([statistics.stdev(acc[arm][n]) if len(acc[arm][n]) > 1 else 0.0 for n in xs])
        c = COLORS.get(arm, NEUTRAL)
        (line,) = ax.plot(xs, m, marker="o", color=c, ls="--" if arm == "pass_at_n" else "-",
                          lw=2.2 if arm == "confidence_prm" else 1.4, zorder=3 if arm == "confidence_prm" else 2)
        if arm in bands and all(n in bands[arm] for n in xs):
            lo, hi = np.array([bands[arm][n][0] for n in xs]), np.array([bands[arm][n][1] for n in xs])
        else:  # accuracy lives in [0, 100]: clip the band so a noisy arm does not draw below 0 %
            lo, hi = np.clip(m - sd, 0, 100), np.clip(m + sd, 0, 100)
        ax.fill_between(xs, lo, hi, color=c, alpha=0.13, lw=0)
        # each legend entry is the arm's line over its band, so the legend shows what the shading is
        handles.append((Patch(color=c, alpha=0.25, lw=0), line))
        labels.append(ARM_LABELS.get(arm, arm))
    log_axis(ax, "x", base=2, ticks=ns)
    ax.set_xlabel("N (candidates per question)")
    ax.set_ylabel("accuracy (%)")
    band = "bootstrap 95% CI over questions" if bands else "± 1 sd over seeds"
    ax.set_title(f"{title}: mean over {seeds} seed{'s' if seeds > 1 else ''}")
    ax.legend(handles, labels, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              title=f"line: mean; band: {band}", title_fontsize=7, alignment="left")
    return save(fig, out_png)


def split_token_types_figure(types_csv: Path, out_png: Path, title: str) -> list[Path]:
    """Share of each token type among all sampled tokens and among the confidence split points."""
    rows = read_rows(types_csv, ["token type", "share of all tokens", "share of split points"])
    fig, axes = figure(5.6, 3.2)
    ax = axes[0, 0]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r.num("share of all tokens") for r in rows], 0.4, label="all sampled tokens", color=NEUTRAL)
    ax.bar(x + 0.2, [r.num("share of split points") for r in rows], 0.4, label="confidence split points",
           color=COLORS["confidence_prm"])
    ax.set_xticks(x, [r["token type"] for r in rows], rotation=30, ha="right")
    ax.grid(axis="x", visible=False)  # categorical axis: vertical grid lines only add noise
    ax.set_ylabel("share (%)")
    ax.set_title(title)
    ax.legend()
    return save(fig, out_png)


def _task_and_profile(record: dict[str, Any]) -> tuple[str, str]:
    return ((record.get("config") or {}).get("task") or {}).get("name", "?"), record.get("profile", "?")


def draw_bon(run_dir: Path, record: dict[str, Any]) -> list[Path]:
    """The figure of a `bon` / `bon_released` record (or running experiment: `core.plots.run_view`).

    Args:
        run_dir: the record's folder.
        record: the record: profile, config.

    Returns:
        The PNG and PDF files written.

    Raises:
        FigureDataError: a CSV the figure needs is missing or corrupt (the message names it).
    """
    run_dir = Path(run_dir)
    task, profile = _task_and_profile(record)
    return bon_figure(run_dir / "bon_long.csv", run_dir / "bon_accuracy_vs_n.png", f"Best-of-N on {task} ({profile})")


def draw_cost(run_dir: Path, record: dict[str, Any]) -> list[Path]:
    """The figure of a `cost` record (arguments, returns and errors as `draw_bon`)."""
    run_dir = Path(run_dir)
    task, profile = _task_and_profile(record)
    return split_token_types_figure(run_dir / "split_token_types.csv", run_dir / "split_token_types.png",
                                    f"Confidence split points by token type ({task}, {profile})")
