"""StreamingLLM figures drawn from saved CSVs only (used by `python -m reproduce.report`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from bench.core.plots import ANNOTATION_SIZE, COLORS, color, count_axis, figure, log_axis, read_rows, save


def _rows(path: Path) -> list[dict[str, str]]:
    return read_rows(path)  # a missing or corrupt CSV raises an error naming the file


def running_ppl(per_token_csv: Path, out_png: Path, title: str, cache: int | None = None) -> list[Path]:
    """Running perplexity vs input length (Fig. 3 / Table 1 curves) from block-mean NLL rows."""
    import math

    by: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in _rows(per_token_csv):
        by[r["method"]].append((int(r["token"]), float(r["mean_nll"])))
    fig, axes = figure(5.5, 3.3)
    ax = axes[0][0]
    for method, pts in by.items():
        pts.sort()
        xs, ys, total, prev = [], [], 0.0, 0
        for tok, nll in pts:
            total += nll * (tok - prev)
            prev = tok
            xs.append(tok)
            ys.append(math.exp(total / tok) if math.isfinite(total) else float("nan"))
        ax.plot(xs, ys, label=method, color=color(method), lw=1.2)
    if cache:
        ax.axvline(cache, color="k", ls=":", lw=0.8)
    log_axis(ax, "y")
    count_axis(ax)
    ax.set_xlabel("input length (tokens)")
    ax.set_ylabel("running perplexity")
    ax.set_title(title)
    ax.legend()
    return save(fig, out_png)


def token_count(n: float) -> str:
    """A stream length for a title: "4.0M" for millions, "20,000" below (a 0.0M title says nothing)."""
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{int(n):,}"


def long_stream(segments_csv: Path, out_png: Path, title: str, books_csv: Path | None = None) -> list[Path]:
    """Fig. 5 style: PPL per segment over the whole stream, with KV-cache memory underneath, and (when the
    run compared books against an empty cache) each sampled book's in-stream/fresh PPL ratio against its
    position in the stream, with the OLS trend."""
    rows = _rows(segments_csv)
    books = _rows(books_csv) if books_csv is not None and Path(books_csv).exists() else []
    sampled = [b for b in books if b.get("ppl_ratio")]
    fig, axes = figure(6.5, 5.2 if sampled else 3.6, nrows=3 if sampled else 2)
    ax, ax2 = axes[0][0], axes[-1][0]
    mid = [(int(r["start_token"]) + int(r["end_token"])) / 2 for r in rows]
    ax.plot(mid, [float(r["ppl"]) for r in rows], color=COLORS["streaming"], lw=1.0, marker=".", ms=3)
    for b in books[1:]:  # book boundaries: content changes there, the cache does not
        ax.axvline(int(b["start_token"]), color="0.8", lw=0.5, zorder=0)
    ax.set_ylabel("PPL per segment")
    ax.set_title(title)
    if sampled:
        _ratio_panel(axes[1][0], sampled)
    if rows and "kv_cache_mb" in rows[0]:
        ax2.plot(mid, [float(r["kv_cache_mb"] or "nan") for r in rows], color="k", lw=1.0)
    ax2.set_ylabel("KV cache MiB")
    ax2.set_xlabel("input length (tokens)")
    for a in (row[0] for row in axes):
        if a is not ax:
            a.sharex(ax)  # one stream axis for all panels
        count_axis(a)
    ax2.set_ylim(bottom=0)
    return save(fig, out_png)


def _ratio_panel(ax, sampled: list[dict[str, str]]) -> None:
    """Per-book in-stream / fresh PPL ratio at the book's stream position, the 2%/5% bands and the trend."""
    from bench.streaming_llm.stats import ols_trend

    x = [int(b["start_token"]) + int(b["compared_tokens"]) / 2 for b in sampled]
    y = [float(b["ppl_ratio"]) for b in sampled]
    ctrl = [b.get("role") == "control" for b in sampled]
    ax.axhline(1.0, color="k", lw=0.8)
    for lim, ls in ((0.02, "--"), (0.05, ":")):
        for sgn in (1, -1):
            ax.axhline(1 + sgn * lim, color="0.5", lw=0.7, ls=ls)
    ax.scatter([v for v, c in zip(x, ctrl) if not c], [v for v, c in zip(y, ctrl) if not c],
               color=COLORS["streaming"], s=14, zorder=3, label="book (first tokens)")
    ax.scatter([v for v, c in zip(x, ctrl) if c], [v for v, c in zip(y, ctrl) if c], facecolors="none",
               edgecolors="k", s=18, zorder=3, label="control (stream start)")
    xs = [v for v, c in zip(x, ctrl) if not c]
    ys = [v for v, c in zip(y, ctrl) if not c]
    if len(set(xs)) >= 2:
        tr = ols_trend([v / 1e6 for v in xs], ys)
        ends = [min(xs), max(xs)]
        ax.plot(ends, [tr.intercept + tr.slope * v / 1e6 for v in ends], color="k", lw=0.8, ls="-.",
                label=f"OLS {tr.slope:+.3f} ± {tr.stderr:.3f} / 1M")
    ax.set_ylabel("PPL in stream / fresh")
    ax.legend(loc="best", fontsize=ANNOTATION_SIZE)
    lo, hi = min(y + [0.95]), max(y + [1.05])
    ax.set_ylim(lo - 0.01, hi + 0.01)


def bars(table_csv: Path, out_png: Path, title: str) -> list[Path]:
    """Tables 2 and 6 as bars (PPL per cache configuration)."""
    rows = _rows(table_csv)
    fig, axes = figure(4.8, 3.0)
    ax = axes[0][0]
    ax.bar([r["cache"] for r in rows], [float(r["ppl"]) for r in rows], color=COLORS["streaming"])
    for i, r in enumerate(rows):
        ax.text(i, float(r["ppl"]), f"{float(r['ppl']):.2f}", ha="center", va="bottom", fontsize=ANNOTATION_SIZE)
    vals = [float(r["ppl"]) for r in rows]
    if max(vals) / max(min(vals), 1e-9) > 10:  # the paper's collapse (5158 vs 9.6) needs a log axis
        log_axis(ax, "y")
    else:  # bars on a linear axis from 0: a truncated axis would make 14.2 vs 21.9 look like 1 vs 10
        ax.set_ylim(0, max(vals) * 1.12)
    ax.grid(axis="x", visible=False)  # categorical axis: vertical grid lines only add noise
    ax.set_ylabel("perplexity")
    ax.set_xlabel("cache (sinks + window)")
    ax.set_title(title)
    return save(fig, out_png)


def rebuild(run_dir: Path, record: dict) -> list[Path]:
    """Redraw the figures of one StreamingLLM record from its CSVs."""
    exp = record["experiment"]
    model = (record.get("config", {}).get("model") or {}).get("name", "?")
    cache = (record.get("config", {}).get("experiment") or {}).get("cache")
    out: list[Path] = []
    if exp == "ppl_table1" and (run_dir / "per_token.csv").exists():
        out += running_ppl(run_dir / "per_token.csv", run_dir / "table1_curves.png",
                           f"{model}: first book, cache {cache}", cache)
    if exp == "ppl_4m" and (run_dir / "fig5_segments.csv").exists():
        n = record["metrics"].get("tokens", {}).get("value") or 0
        out += long_stream(run_dir / "fig5_segments.csv", run_dir / "fig5_long_stream.png",
                           f"{model}: {token_count(n)}-token concatenated stream",
                           books_csv=run_dir / "fig5_books.csv")
    for name, title in (("table2", "Table 2 — number of initial tokens"), ("table6", "Table 6 — cache size")):
        if (run_dir / f"{name}.csv").exists():
            out += bars(run_dir / f"{name}.csv", run_dir / f"{name}.png", title)
    return out
