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


def long_stream(segments_csv: Path, out_png: Path, title: str) -> list[Path]:
    """Fig. 5 style: PPL per segment over the whole stream, with KV-cache memory underneath."""
    rows = _rows(segments_csv)
    fig, axes = figure(6.5, 3.6, nrows=2)
    ax, ax2 = axes[0][0], axes[1][0]
    mid = [(int(r["start_token"]) + int(r["end_token"])) / 2 for r in rows]
    ax.plot(mid, [float(r["ppl"]) for r in rows], color=COLORS["streaming"], lw=1.0, marker=".", ms=3)
    ax.set_ylabel("PPL per segment")
    ax.set_title(title)
    if rows and "kv_cache_mb" in rows[0]:
        ax2.plot(mid, [float(r["kv_cache_mb"] or "nan") for r in rows], color="k", lw=1.0)
    ax2.set_ylabel("KV cache MiB")
    ax2.set_xlabel("input length (tokens)")
    count_axis(ax)
    count_axis(ax2)
    ax2.set_ylim(bottom=0)
    return save(fig, out_png)


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
                           f"{model}: {n / 1e6:.1f}M-token concatenated stream")
    for name, title in (("table2", "Table 2 — number of initial tokens"), ("table6", "Table 6 — cache size")):
        if (run_dir / f"{name}.csv").exists():
            out += bars(run_dir / f"{name}.csv", run_dir / f"{name}.png", title)
    return out
