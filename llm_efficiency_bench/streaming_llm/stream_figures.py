"""Figures of StreamingLLM in use: streaming QA on ARC (Table 5) and StreamEval (Figs. 8-9, Table 7).

Drawn from each record's `answers.csv` by the experiments' drawers (`draw_stream_qa`, `draw_stream_eval`),
which the runner and the report both call, like the language-modelling figures (`figures.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_efficiency_bench.core.plots import (ANNOTATION_SIZE, COLORS, color, count_axis, figure, read_rows,
                                             record_get as _get, save)


QA_POLICIES = {"one_shot": ("one-shot", "#2ca02c"), "dense": ("dense", COLORS["dense"]),
               "window": ("window", COLORS["window"]), "streaming": ("4+(L-4)", COLORS["streaming"])}


def stream_qa(answers_csv: Path, out_png: Path, title: str, cache: int, context: int | None,
              running: int = 100) -> list[Path]:
    """Table 5: acc_norm per split and policy with a 95% bootstrap interval (top), and the running acc_norm
    (mean of the last `running` questions, fewer on short runs) against the question's stream position."""
    import numpy as np

    rows = read_rows(answers_csv, ["split", "policy", "index", "stream_tokens", "correct_norm"])
    splits = list(dict.fromkeys(r["split"] for r in rows))
    pols = [p for p in QA_POLICIES if any(r["policy"] == p for r in rows)]
    fig, axes = figure(3.4 * len(splits), 5.4, ncols=len(splits), nrows=2)
    rng = np.random.default_rng(0)
    for j, split in enumerate(splits):
        ax, ax2 = axes[0][j], axes[1][j]
        pos = {int(r["index"]): int(r["stream_tokens"]) for r in rows
               if r["split"] == split and r["policy"] in ("streaming", "window", "dense")}
        for i, p in enumerate(pols):
            sel = sorted((int(r["index"]), int(r["correct_norm"])) for r in rows
                         if r["split"] == split and r["policy"] == p)
            if not sel:
                continue
            y = np.array([c for _, c in sel], float) * 100
            boots = y[rng.integers(0, y.size, (2000, y.size))].mean(1)
            lo, hi = np.percentile(boots, [2.5, 97.5])
            label, col = QA_POLICIES[p]
            ax.bar(i, y.mean(), color=col, yerr=[[y.mean() - lo], [hi - y.mean()]], capsize=3)
            ax.text(i, 2, f"{y.mean():.1f}", ha="center", va="bottom", fontsize=ANNOTATION_SIZE, color="w")
            if y.size >= 2:
                k = min(running, max(2, y.size // 3))
                roll = np.convolve(y, np.ones(k) / k, mode="valid")
                xs = [pos.get(idx, idx) for idx, _ in sel][k - 1:]
                ax2.plot(xs, roll, color=col, lw=1.0, label=label)
        ax.set_xticks(range(len(pols)), [QA_POLICIES[p][0] for p in pols])
        ax.grid(axis="x", visible=False)
        ax.set_ylim(0, 100)
        ax.set_ylabel("acc_norm (%)")
        ax.set_title(split)
        ax2.axvline(cache, color="k", ls=":", lw=0.8, label=f"cache {cache}")
        if context:
            ax2.axvline(context, color=COLORS["dense"], ls="--", lw=0.8, label=f"context {context}")
        count_axis(ax2)
        ax2.set_ylim(0, 100)
        ax2.set_xlabel("stream position of the question (tokens)")
        ax2.set_ylabel("running acc_norm (%)")
        ax2.legend(fontsize=ANNOTATION_SIZE)
    fig.suptitle(title)
    return save(fig, out_png)


SE_POLICIES = {"streaming": "StreamingLLM", "window": "window", "dense": "dense"}


def stream_eval_positions(rows: list[dict[str, Any]], bins: int) -> list[dict[str, Any]]:
    """Fig. 9 rows: accuracy per policy in `bins` equal stream-position bins, on the queries whose asked line
    StreamingLLM still caches (the same queries for every policy), with Wilson 95% intervals."""
    from llm_efficiency_bench.streaming_llm.stats import wilson

    keep = {int(r["query"]) for r in rows if r["policy"] == "streaming" and int(r["in_cache"])}
    if not any(r["policy"] == "streaming" for r in rows):  # no StreamingLLM run: every query
        keep = {int(r["query"]) for r in rows}
    top = max((int(r["stream_tokens"]) for r in rows), default=0)
    width = max(1, -(-top // max(1, bins)))
    out = []
    for p in SE_POLICIES:
        for b in range(bins):
            sel = [int(r["correct"]) for r in rows if r["policy"] == p and int(r["query"]) in keep
                   and b * width < int(r["stream_tokens"]) <= (b + 1) * width]
            if sel:
                lo, hi = wilson(sum(sel), len(sel))
                out.append({"policy": p, "from_tokens": b * width, "to_tokens": (b + 1) * width, "n": len(sel),
                            "accuracy": 100 * sum(sel) / len(sel), "ci_lo": 100 * lo, "ci_hi": 100 * hi})
    return out


def stream_eval(answers_csv: Path, out_png: Path, title: str, cache: int, context: int | None,
                bins: int) -> list[Path]:
    """Fig. 9 / Table 7: accuracy vs stream position per policy (left) and vs answer distance (right), with
    the cache size (and the dense model's trained context) marked; bars are Wilson 95% intervals."""
    from llm_efficiency_bench.streaming_llm.stats import wilson

    rows = read_rows(answers_csv, ["policy", "query", "stream_tokens", "distance_tokens", "nominal_distance",
                                   "in_cache", "correct"])
    fig, axes = figure(9.0, 3.3, ncols=2)
    ax, ax2 = axes[0][0], axes[0][1]
    pos = stream_eval_positions(rows, bins)
    for i, (p, name) in enumerate(SE_POLICIES.items()):
        mark = "os^"[i]
        pts = [r for r in pos if r["policy"] == p]
        if pts:  # policies side by side within a bin, so equal accuracies do not hide each other
            x = [(r["from_tokens"] + r["to_tokens"]) / 2 + (i - 1) * 0.12 * (r["to_tokens"] - r["from_tokens"])
                 for r in pts]
            y = [r["accuracy"] for r in pts]
            err = [[v - r["ci_lo"] for v, r in zip(y, pts)], [r["ci_hi"] - v for v, r in zip(y, pts)]]
            ax.errorbar(x, y, yerr=err, color=color(p), marker=mark, ms=3.5, lw=1.0, capsize=2, label=name)
        sel = [r for r in rows if r["policy"] == p]
        dists = sorted({int(r["nominal_distance"]) for r in sel})
        xs, ys, lo, hi = [], [], [], []
        for d in dists:
            ds = [r for r in sel if int(r["nominal_distance"]) == d]
            k = sum(int(r["correct"]) for r in ds)
            lw, up = wilson(k, len(ds))
            xs.append(sum(int(r["distance_tokens"]) for r in ds) / len(ds) * (1 + (i - 1) * 0.03))
            ys.append(100 * k / len(ds))
            lo.append(ys[-1] - 100 * lw)
            hi.append(100 * up - ys[-1])
        if xs:
            ax2.errorbar(xs, ys, yerr=[lo, hi], color=color(p), marker=mark, ms=3.5, lw=1.0, capsize=2, label=name)
    for a in (ax, ax2):
        a.axvline(cache, color="k", ls=":", lw=0.8, label=f"cache {cache}")
        a.set_ylim(-3, 103)
        a.set_ylabel("accuracy (%)")
        count_axis(a)
    if context:
        ax.axvline(context, color=color("dense"), ls="--", lw=0.8, label=f"context {context}")
    ax.set_xlabel("stream position of the query (tokens)")
    ax.set_title("answers in the StreamingLLM cache")
    ax2.set_xlabel("answer distance (tokens back, mean per distance; policies offset)")
    ax2.set_title("by distance")
    ax.legend(fontsize=ANNOTATION_SIZE)
    ax2.legend(fontsize=ANNOTATION_SIZE)
    fig.suptitle(title)
    return save(fig, out_png)


def _answers_view(record: dict) -> tuple[str, int, int, int | None]:
    """(model name, S, L, the model's trained context) of a record, for the titles and the marked lines."""
    cfg = record.get("config") or {}
    e = cfg.get("experiment") or {}
    ctx_len = _get(cfg, "model", "context")
    return (str(_get(cfg, "model", "name", default="?")), int(e.get("n_sink", 0)), int(e["cache"]),
            int(ctx_len) if ctx_len else None)


def draw_stream_qa(run_dir: Path, record: dict) -> list[Path]:
    """Table 5 (`answers.csv`)."""
    run_dir = Path(run_dir)
    if not (run_dir / "answers.csv").exists():
        return []
    model, S, L, context = _answers_view(record)
    return stream_qa(run_dir / "answers.csv", run_dir / "table5_stream_qa.png",
                     f"{model}: ARC as one stream, cache {S}+{L - S}", L, context)


def draw_stream_eval(run_dir: Path, record: dict) -> list[Path]:
    """Figs. 8-9 / Table 7 (`answers.csv`)."""
    run_dir = Path(run_dir)
    if not (run_dir / "answers.csv").exists():
        return []
    model, S, L, context = _answers_view(record)
    bins = int(_get(record, "config", "experiment", "position_bins", default=8))
    return stream_eval(run_dir / "answers.csv", run_dir / "stream_eval.png", f"{model}: StreamEval, cache {S}+{L - S}",
                       L, context, bins)
