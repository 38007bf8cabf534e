"""StreamingLLM figures drawn from saved CSVs only.

Each experiment declares its drawer (`@experiment(figures=draw_...)`): the runner calls it on the run's CSVs
once the experiment returns, and `python -m reproduce.report` calls the same drawer on a saved record folder,
so a run and the report draw the same figure, with the title built once (here) from the record:

* `ppl_table1` -> `table1_curves.png` from `per_token.csv`; `ppl_sinks` / `ppl_cache` -> `table2.png` /
  `table6.png` from their tables; `ppl_4m` -> `fig5_long_stream.png` from `fig5_segments.csv`;
* `speed` -> `fig10_latency_memory.png` from `fig10.csv`;
* `attention` -> `fig2_attention_maps.png` from `attention_maps.csv` and `sink_share_per_layer.png` from
  `sink_share.csv`;
* `chat` -> `chat_memory.png` from `transcript.csv`;
* `sink_pretrain` -> `table3.png` from `table3_long.csv` and `sink_share_vs_steps.csv`;
* `stream_qa` and `stream_eval`: `stream_figures.py`.

A figure whose CSV the record does not have (a record older than that CSV) is skipped: the report then
shows the figure the run saved. A CSV that exists but is corrupt raises `FigureDataError`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from llm_efficiency_bench.core.plots import (ANNOTATION_SIZE, COLORS, color, count_axis, figure, log_axis, read_rows,
                              record_get as _get, save)


def _rows(path: Path) -> list[dict[str, str]]:
    return read_rows(path)  # a missing or corrupt CSV raises an error naming the file


def running_ppl(per_token_csv: Path, out_png: Path, title: str, cache: int | None = None,
                table_csv: Path | None = None, streaming_at_sample: float | None = None) -> list[Path]:
    """Running perplexity vs input length (Fig. 3 / Table 1 curves) from block-mean NLL rows, and the sliding
    window with recomputation from `table1.csv` beside them. Recomputation is scored on a sample of
    positions (one L-token forward each), so it has no running curve: it is drawn as its PPL over the
    sampled positions with ±2 standard errors at the end of the stream, next to streaming's PPL on the same
    positions (`streaming_at_sample`), the pair the paired ratio compares."""
    import math

    by: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in _rows(per_token_csv):
        by[r["method"]].append((int(r["token"]), float(r["mean_nll"])))
    fig, axes = figure(7.5, 3.3)
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
    end = max((t for pts in by.values() for t, _ in pts), default=0)
    recompute = [r for r in _rows(table_csv) if r["method"].startswith("recompute")] \
        if table_csv is not None and Path(table_csv).exists() else []
    x_rec, x_str = end * 1.04, end * 1.02  # side by side past the curves' end, so neither hides the other
    for r in recompute:
        ppl, se = float(r["ppl"]), float(r["stderr"] or 0)
        n = int(r["tokens"])
        ax.errorbar([x_rec], [ppl], yerr=[[ppl - math.exp(math.log(ppl) - 2 * se / ppl)],
                                        [math.exp(math.log(ppl) + 2 * se / ppl) - ppl]] if se else None,
                    fmt="s", color=color("recompute"), ms=5, capsize=3, zorder=4,
                    label=f"{r['method']} ({n:,} sampled positions, ±2 SE)")
        if streaming_at_sample is not None:
            ax.plot([x_str], [streaming_at_sample], "o", mfc="none", color=COLORS["streaming"], ms=6, zorder=4,
                    label="streaming on the same positions")
    if cache:
        ax.axvline(cache, color="k", ls=":", lw=0.8)
        ax.annotate(f"cache {cache}", (cache, 0), xycoords=("data", "axes fraction"), xytext=(3, 4),
                    textcoords="offset points", fontsize=ANNOTATION_SIZE)
    log_axis(ax, "y")
    count_axis(ax)
    ax.set_xlabel("input length (tokens)")
    ax.set_ylabel("running perplexity")
    ax.set_title(title)
    ax.legend(fontsize=ANNOTATION_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
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
    for b in books:  # each book named at its start, so a PPL step reads as a change of text
        ax.annotate(b["book"].replace("_", " ")[:22], (int(b["start_token"]), 1), xycoords=("data", "axes fraction"),
                    xytext=(1, -2), textcoords="offset points", rotation=90, va="top", fontsize=4.5, color="0.35")
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
    from llm_efficiency_bench.streaming_llm.stats import ols_trend

    x = [int(b["start_token"]) + int(b["compared_tokens"]) / 2 for b in sampled]
    y = [float(b["ppl_ratio"]) for b in sampled]
    ctrl = [b.get("role") == "control" for b in sampled]
    ax.axhline(1.0, color="k", lw=0.8)
    for lim, ls in ((0.02, "--"), (0.05, ":")):  # the claims: median within 2%, no book above 5%
        for sgn in (1, -1):
            ax.axhline(1 + sgn * lim, color="0.5", lw=0.7, ls=ls, label=f"±{lim:.0%}" if sgn > 0 else None)
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
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=ANNOTATION_SIZE)
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


def latency_memory(fig10_csv: Path, out_png: Path, title: str, paper_speedup: float | None = None,
                   paper_cache: int = 4096, memory_label: str = "memory (MiB)") -> list[Path]:
    """Fig. 10: per-token latency (bars), the speed-up against the paper's (22.2x at cache 4096) and memory per
    cache size, both methods. `memory_label` says what the memory is (process RSS on a CPU, peak allocated
    memory on a GPU)."""
    rows = read_rows(fig10_csv, ["cache", "recompute_ms", "streaming_ms", "speedup", "mem_recompute_mb",
                                 "mem_streaming_mb"])
    fig, axes = figure(9.0, 3.0, ncols=3)
    ax, ax3, ax2 = axes[0][0], axes[0][1], axes[0][2]
    x = list(range(len(rows)))
    w = 0.38
    rec_ms, str_ms = [float(r["recompute_ms"]) for r in rows], [float(r["streaming_ms"]) for r in rows]
    ax.bar([i - w / 2 for i in x], rec_ms, w, color=COLORS["recompute"], label="sliding window w/ recompute")
    ax.bar([i + w / 2 for i in x], str_ms, w, color=COLORS["streaming"], label="StreamingLLM")
    for i, r in enumerate(rows):
        ax.text(i, rec_ms[i], f"{float(r['speedup']):.1f}x", ha="center", va="bottom", fontsize=ANNOTATION_SIZE)
    caches = [str(r["cache"]) for r in rows]
    ax.set_xticks(x, caches)
    ax.set_xlabel("cache size")
    ax.set_ylabel("per-token latency (ms)")
    ax.legend(fontsize=ANNOTATION_SIZE)
    ax3.plot(caches, [float(r["speedup"]) for r in rows], marker="o", color=COLORS["streaming"], label="ours")
    if paper_speedup is not None and str(paper_cache) in caches:
        ax3.plot([str(paper_cache)], [paper_speedup], "*", color="k", ms=11, zorder=4,
                 label=f"paper: {paper_speedup:g}x (Llama-2-13B, A6000)")
    ax3.set_ylim(bottom=0)
    ax3.set_xlabel("cache size")
    ax3.set_ylabel("speed-up over recompute (x)")
    ax3.legend(fontsize=ANNOTATION_SIZE)
    ax2.plot(caches, [float(r["mem_recompute_mb"]) for r in rows], marker="o", color=COLORS["recompute"],
             label="recompute")
    ax2.plot(caches, [float(r["mem_streaming_mb"]) for r in rows], marker="o", color=COLORS["streaming"],
             label="StreamingLLM")
    ax2.set_xlabel("cache size")
    ax2.set_ylabel(memory_label)
    ax2.legend(fontsize=ANNOTATION_SIZE)
    fig.suptitle(title)
    return save(fig, out_png)


def attention_maps(maps_csv: Path, out_png: Path, title: str) -> list[Path]:
    """Fig. 2: mean attention maps (query x key) of a few layers, from long-form (layer, query, key, weight)."""
    import numpy as np

    rows = read_rows(maps_csv, ["layer", "query", "key", "weight"])
    layers = sorted({int(r["layer"]) for r in rows})
    t = max(int(r["query"]) for r in rows) + 1
    maps = {k: np.zeros((t, t)) for k in layers}
    for r in rows:
        maps[int(r["layer"])][int(r["query"]), int(r["key"])] = float(r["weight"])
    fig, axes = figure(2.2 * len(layers), 2.4, ncols=len(layers))
    for ax, k in zip(axes[0], layers):
        ax.imshow(maps[k], cmap="viridis", vmin=0, vmax=float(maps[k].max()))
        ax.set_title(f"layer {k}")
        ax.set_xlabel("key")
        ax.grid(False)
    axes[0][0].set_ylabel("query")
    fig.suptitle(title)
    return save(fig, out_png)


def sink_share_per_layer(share_csv: Path, out_png: Path, late_position: Any) -> list[Path]:
    """Share of attention on token 0 per layer: a late query in a book (bars), short sentences (dots)."""
    rows = read_rows(share_csv, ["layer", "share_token0_late", "share_token0_short_sentences"])
    layers = [int(r["layer"]) for r in rows]
    fig, axes = figure(6.0, 2.8)
    ax = axes[0][0]
    ax.bar(layers, [float(r["share_token0_late"]) for r in rows], color="#1f77b4", label=f"query at {late_position}")
    ax.plot(layers, [float(r["share_token0_short_sentences"]) for r in rows], "k.", label="short sentences")
    ax.set_xlabel("layer")
    ax.set_ylabel("attention on token 0")
    ax.set_ylim(0, 1)
    ax.legend()
    return save(fig, out_png)


def chat_memory(transcript_csv: Path, out_png: Path, title: str, cache: int) -> list[Path]:
    """Streaming chat: cache length and tokens streamed per round, and process RSS underneath."""
    rows = read_rows(transcript_csv, ["round", "cache_len", "tokens_total", "rss_mb"])
    fig, axes = figure(6.5, 3.6, nrows=2)
    ax, ax2 = axes[0][0], axes[1][0]
    xs = [int(r["round"]) for r in rows]
    ax.plot(xs, [int(r["cache_len"]) for r in rows], color=COLORS["streaming"], marker=".", lw=1.0,
            label="cache length")
    ax.plot(xs, [min(int(r["tokens_total"]), 10 * cache) for r in rows], color="#7f7f7f", ls="--", lw=0.8,
            label="tokens streamed (clipped at 10x cache)")
    ax.axhline(cache, color="k", ls=":", lw=0.8, label=f"S+R = {cache}")
    ax.set_ylabel("tokens")
    ax.set_title(title)
    ax.legend()
    ax2.plot(xs, [float(r["rss_mb"]) for r in rows], color="k", marker=".", lw=1.0)
    ax2.set_ylabel("process RSS (MiB)")
    ax2.set_xlabel("round")
    return save(fig, out_png)


PRETRAIN_COLORS = {"vanilla": "#7f7f7f", "sink": "#1f77b4", "zero_sink": "#ff7f0e"}


def pretrain_table3(long_csv: Path, steps_csv: Path, out_png: Path, cache: int, context: int) -> list[Path]:
    """Table 3 as grouped bars (log PPL from 1, so a collapse stands out and equal bars look equal) and the
    position-0 attention share during training against the uniform share 1/T."""
    rows = read_rows(long_csv, ["variant", "n_sink", "ppl"])
    steps = read_rows(steps_csv, ["variant", "step", "share_median"]) if steps_csv.exists() else []
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    counts = sorted({int(r["n_sink"]) for r in rows})
    L, T = int(cache), int(context)
    fig, axes = figure(9.0, 3.2, ncols=2)
    ax, ax2 = axes[0][0], axes[0][1]
    w = 0.8 / max(1, len(variants))
    top = 1.0
    for i, v in enumerate(variants):
        vals = [next(float(r["ppl"]) for r in rows if r["variant"] == v and int(r["n_sink"]) == s) for s in counts]
        xs = [k + (i - (len(variants) - 1) / 2) * w for k in range(len(counts))]
        ax.bar(xs, vals, w, color=PRETRAIN_COLORS.get(v), label=v)
        for x, y in zip(xs, vals):
            ax.text(x, y, f"{y:.0f}" if y >= 100 else f"{y:.1f}", ha="center", va="bottom", fontsize=6)
        top = max(top, *vals)
    ax.set_xticks(range(len(counts)), [f"{s}+{L - s}" for s in counts])
    ax.set_yscale("log")
    ax.set_ylim(1, top * 3)
    ax.set_xlabel("initial tokens + recent tokens")
    ax.set_ylabel("streaming PPL (held-out)")
    ax.set_title("Table 3: pre-training with a sink token")
    ax.legend(ncol=len(variants), loc="upper center")
    for v in variants:
        pts = [(int(r["step"]), float(r["share_median"])) for r in steps if r["variant"] == v]
        if pts:
            ax2.plot(*zip(*pts), marker=".", color=PRETRAIN_COLORS.get(v), label=v)
    ax2.axhline(1 / T, color="k", ls=":", lw=0.8, label=f"uniform 1/{T}")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("training step")
    ax2.set_ylabel("attention on position 0 (median layer)")
    ax2.set_title("sink emergence during training")
    ax2.legend()
    return save(fig, out_png)


def _paper_value(claim_id: str) -> float | None:
    """A paper number from `references/streaming_llm.yaml` (None when the file or claim is absent)."""
    from llm_efficiency_bench.core.references import paper_value

    try:
        return paper_value("streaming_llm", claim_id)
    except (FileNotFoundError, KeyError):
        return None


def _policy(e: dict) -> str:
    """The streaming policy `S+R` of an experiment config (`4+1020`), '' without sinks and cache."""
    S, cache = e.get("n_sink"), e.get("cache")
    return f"{S}+{int(cache) - int(S)}" if S is not None and cache is not None else ""


def _view(run_dir: Path, record: dict) -> tuple[Path, dict, str]:
    """(run folder, the run's `experiment` settings, the model's name) of a record."""
    cfg = record.get("config") or {}
    return Path(run_dir), cfg.get("experiment") or {}, _get(cfg, "model", "name", default="?")


def draw_table1(run_dir: Path, record: dict) -> list[Path]:
    """Table 1's running perplexity (`per_token.csv`, `table1.csv`)."""
    run_dir, e, model = _view(run_dir, record)
    if not (run_dir / "per_token.csv").exists():
        return []
    cache = e.get("cache")
    return running_ppl(run_dir / "per_token.csv", run_dir / "table1_curves.png", f"{model}: first book, cache {cache}",
                       cache, table_csv=run_dir / "table1.csv",
                       streaming_at_sample=_get(record, "metrics",
                                                f"ppl.streaming_at_recompute_positions.{_policy(e)}", "value"))


def draw_long_stream(run_dir: Path, record: dict) -> list[Path]:
    """Fig. 5 (`fig5_segments.csv`, `fig5_books.csv`)."""
    run_dir, e, model = _view(run_dir, record)
    if not (run_dir / "fig5_segments.csv").exists():
        return []
    n = _get(record, "metrics", "tokens", "value", default=0) or 0
    policy = f", {_policy(e)}" if _policy(e) else ""
    return long_stream(run_dir / "fig5_segments.csv", run_dir / "fig5_long_stream.png",
                       f"{model}: {token_count(n)}-token concatenated stream{policy}",
                       books_csv=run_dir / "fig5_books.csv")


def _bars(run_dir: Path, name: str, title: str) -> list[Path]:
    run_dir = Path(run_dir)
    return bars(run_dir / f"{name}.csv", run_dir / f"{name}.png", title) if (run_dir / f"{name}.csv").exists() else []


def draw_table2(run_dir: Path, record: dict) -> list[Path]:
    """Table 2 as bars (`table2.csv`)."""
    return _bars(run_dir, "table2", "Table 2 — number of initial tokens")


def draw_table6(run_dir: Path, record: dict) -> list[Path]:
    """Table 6 as bars (`table6.csv`)."""
    return _bars(run_dir, "table6", "Table 6 — cache size")


def draw_speed(run_dir: Path, record: dict) -> list[Path]:
    """Fig. 10 (`fig10.csv`); the memory axis says what was measured (RSS on a CPU, allocated GPU memory)."""
    run_dir, e, model = _view(run_dir, record)
    if not (run_dir / "fig10.csv").exists():
        return []
    machine = _get(record, "env", "device_name", default="?")
    on_gpu = str(_get(record, "env", "device", default="cpu")).startswith("cuda")
    return latency_memory(run_dir / "fig10.csv", run_dir / "fig10_latency_memory.png", f"{model} decoding, {machine}",
                          paper_speedup=_paper_value("fig10_speedup_4096"),
                          memory_label="peak GPU memory allocated (MiB)" if on_gpu else "process RSS on CPU (MiB)")


def draw_attention(run_dir: Path, record: dict) -> list[Path]:
    """Fig. 2's maps (`attention_maps.csv`) and the share on token 0 per layer (`sink_share.csv`)."""
    run_dir, e, model = _view(run_dir, record)
    out: list[Path] = []
    if (run_dir / "attention_maps.csv").exists():
        n = read_rows(run_dir / "attention_maps.csv", ["sentences"])[0]["sentences"]
        out += attention_maps(run_dir / "attention_maps.csv", run_dir / "fig2_attention_maps.png",
                              f"{model}: average attention over {n} sentences (Fig. 2 style)")
    if (run_dir / "sink_share.csv").exists():
        out += sink_share_per_layer(run_dir / "sink_share.csv", run_dir / "sink_share_per_layer.png",
                                    e.get("late_position", "?"))
    return out


def draw_chat(run_dir: Path, record: dict) -> list[Path]:
    """Cache length and memory per round of the chat (`transcript.csv`)."""
    run_dir, e, model = _view(run_dir, record)
    if not (run_dir / "transcript.csv").exists():
        return []
    S, L = int(e.get("n_sink", 0)), int(e["cache"])
    return chat_memory(run_dir / "transcript.csv", run_dir / "chat_memory.png",
                       f"{model}: streaming chat, cache {S}+{L - S}", L)


def draw_table3(run_dir: Path, record: dict) -> list[Path]:
    """Table 3 and the sink's emergence during training (`table3_long.csv`, `sink_share_vs_steps.csv`)."""
    run_dir, e, model = _view(run_dir, record)
    if not (run_dir / "table3_long.csv").exists():
        return []
    return pretrain_table3(run_dir / "table3_long.csv", run_dir / "sink_share_vs_steps.csv", run_dir / "table3.png",
                           int(e["cache"]), int(_get(e, "train", "seq_len")))
