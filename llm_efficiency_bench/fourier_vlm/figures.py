"""Fourier-VLM figures drawn from the CSVs each experiment writes.

The experiments call `rebuild` on their own output folder, and `python -m reproduce.report` calls it on a
saved record folder, so a figure from a run and from the report come out of the same code and data:

* `flops` -> `flops.png` from `flops_long.csv`: FLOPs vs image tokens, and the reduction under each counting
  convention against the paper's 83.8%.
* `speed` -> `speed.png` from `speed.csv`, `speed_samples.csv`, `compressor_time.csv`: prefill / TTFT /
  decode vs image tokens (median and IQR), the end-to-end speed-up vs the uncompressed model with a
  bootstrap 95% interval over repetitions, the compressor alone.

`claim_notes` says, for the report, which FLOPs counting convention the headline number uses, beside the
physical count of the whole model by torch's FlopCounterMode (`flops_crosscheck.csv`).
* `lowpass` -> `lowpass_error.png` from `lowpass.csv`: energy kept and reconstruction error per method.
  The picture `lowpass.png` (the photo compressed by each method) needs the image and the compressors, so
  only the experiment draws it; the report shows the one the run saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_efficiency_bench.fourier_vlm.flops import Convention
from llm_efficiency_bench.core.plots import COLORS, REFERENCE, figure, log_axis, read_rows, record_get as _get, save

PAPER = "fourier_vlm"
# Colour per (scope, FFN matrices) in the convention panel; the phase is the line style.
_CONV_COLORS = {("llm_vit_proj", 2): "#1f77b4", ("llm_vit_proj", 3): "#17becf", ("llm", 2): "#ff7f0e",
                ("llm", 3): "#d62728"}
_MODEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]


def _paper_value(claim_id: str) -> float | None:
    """A paper number from `references/fourier_vlm.yaml` (None when the file or claim is absent)."""
    from llm_efficiency_bench.core.references import paper_value

    try:
        return paper_value(PAPER, claim_id)
    except (FileNotFoundError, KeyError):
        return None


def _conv_label(name: str) -> str:
    """'llm_vit_proj_ffn2_prefill' -> 'LLM+ViT+proj, FFN x2, prefill'."""
    c = Convention.parse(name)
    scope = "LLM+ViT+proj" if c.scope == "llm_vit_proj" else "LLM only"
    text = f", +{c.text_tokens} text" if c.text_tokens else ""
    return f"{scope}, FFN x{c.ffn_mats}, {c.phase.replace('_', '+')}{text}"


def _token_axis(ax, tokens: list[int]) -> None:
    """Image tokens are k*k budgets (36 ... 576): a log axis with a tick at each budget keeps them apart."""
    log_axis(ax, "x", base=2, ticks=sorted(set(tokens)))
    ax.set_xlabel("image tokens")


def flops_figure(long_csv: Path, out_png: Path, paper_convention: str, paper_reduction: float | None,
                 paper_tokens: int = 64) -> list[Path]:
    """FLOPs vs image tokens per model, and the 7B reduction under every convention vs the paper's number.

    Args:
        long_csv: `flops_long.csv` (model, convention, image_tokens, decode_tokens, total, reduction).
        out_png: where to write (a PDF goes beside it).
        paper_convention: the convention that reconstructs the paper's count (drawn bold).
        paper_reduction: the paper's reduction as a fraction (None: no reference line).
        paper_tokens: the budget the paper's number is read at.
    """
    rows = read_rows(long_csv, ["model", "convention", "image_tokens", "total", "reduction"])
    models = list(dict.fromkeys(r["model"] for r in rows))
    tokens = sorted({int(r.num("image_tokens")) for r in rows})
    base = max(tokens)
    fig, ax = figure(10.0, 3.6, ncols=2)
    a = ax[0, 0]
    for i, model in enumerate(models):
        for conv, ls in ((paper_convention, "-"), ("llm_ffn2_prefill", "--")):
            pts = sorted((int(r.num("image_tokens")), r.num("total") / 1e12) for r in rows
                         if r["model"] == model and r["convention"] == conv)
            if pts:
                scope = _conv_label(conv).split(",")[0]  # both lines share FFN x2 and prefill: say it once
                a.plot(*zip(*pts), ls, marker="o", color=_MODEL_COLORS[i % len(_MODEL_COLORS)],
                       label=f"{model}, {scope}")
    log_axis(a, "y")
    _token_axis(a, tokens)
    a.set(ylabel="TFLOPs (log)", title="FLOPs vs kept image tokens (FFN x2, prefill)")
    a.legend(loc="upper left")  # the curves rise to the upper right; the upper left stays empty

    b = ax[0, 1]
    ref = next((m for m in models if "7b" in m.lower()), models[0])
    convs = [c for c in dict.fromkeys(r["convention"] for r in rows if r["model"] == ref)
             if not Convention.parse(c).text_tokens]  # the +text variants only shift the curves a little
    for conv in convs:
        c = Convention.parse(conv)
        pts = sorted((int(r.num("image_tokens")), 100 * r.num("reduction")) for r in rows
                     if r["model"] == ref and r["convention"] == conv and int(r.num("image_tokens")) != base)
        bold = conv == paper_convention
        b.plot(*zip(*pts), "-" if c.phase == "prefill" else "--", marker="o" if bold else ".",
               color=_CONV_COLORS.get((c.scope, c.ffn_mats)), lw=2.6 if bold else 1.1, zorder=3 if bold else 2,
               label=_conv_label(conv) + (" (paper's count)" if bold else ""))
    if paper_reduction is not None:
        b.axhline(100 * paper_reduction, **REFERENCE)
        b.plot([paper_tokens], [100 * paper_reduction], "*", color="k", ms=11, zorder=4,
               label=f"paper: {100 * paper_reduction:.1f}% at {paper_tokens} tokens")
    _token_axis(b, [t for t in tokens if t != base])
    b.set(ylabel=f"FLOPs reduction vs {base} tokens (%)", title=f"{ref}: reduction by counting convention")
    b.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return save(fig, out_png)


def _spread(rows: list, tokens: list[int], key: str) -> tuple[list[float], list[list[float]]]:
    """Median and the (median - p25, p75 - median) error bars per budget, as `llm_efficiency_bench.core.timing` reports them."""
    from llm_efficiency_bench.core.timing import summarize

    med, lo, hi = [], [], []
    for t in tokens:
        s = summarize([r.num(key) for r in rows if int(r.num("image_tokens")) == t])
        med.append(s.median_ms)
        lo.append(s.median_ms - s.p25_ms)
        hi.append(s.p75_ms - s.median_ms)
    return med, [lo, hi]


def speedup_interval(samples: list, base: int, tokens: int, key: str = "e2e_ms", reps: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of median(key at `base`) / median(key at `tokens`), resampling the
    repetitions of each budget independently (seeded, so a rebuild draws the same interval)."""
    import numpy as np

    a = np.array([r.num(key) for r in samples if int(r.num("image_tokens")) == base])
    b = np.array([r.num(key) for r in samples if int(r.num("image_tokens")) == tokens])
    rng = np.random.default_rng(seed)
    ratios = [np.median(rng.choice(a, a.size)) / np.median(rng.choice(b, b.size)) for _ in range(reps)]
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def speed_figure(run_dir: Path, out_png: Path, title: str, paper_speedup: float | None,
                 paper_tokens: int = 64) -> list[Path]:
    """Prefill/TTFT, decode throughput and speed-up vs image tokens, and the compressor alone (2x2).

    Args:
        run_dir: folder with `speed.csv`, `speed_samples.csv` and `compressor_time.csv`.
        out_png: where to write (a PDF goes beside it).
        title: the figure's title (model, machine, batch, G).
        paper_speedup: the paper's end-to-end speed-up (None: no reference line).
        paper_tokens: the budget the paper's number is read at.
    """
    table = read_rows(run_dir / "speed.csv", ["image tokens", "e2e speedup", "TTFT speedup"])
    samples = read_rows(run_dir / "speed_samples.csv", ["image_tokens", "prefill_ms", "ttft_ms", "decode_tok_s"])
    comp = read_rows(run_dir / "compressor_time.csv", ["grid", "channels", "dct ms", "dct_dense ms"])
    tokens = sorted({int(r.num("image_tokens")) for r in samples})
    base = int(table[0].num("image tokens"))  # the first row is the uncompressed model
    fig, ax = figure(8.4, 6.0, ncols=2, nrows=2)
    a = ax[0, 0]
    for key, label, c in (("prefill_ms", "LLM prefill", "#1f77b4"), ("ttft_ms", "time to first token", "#ff7f0e")):
        med, err = _spread(samples, tokens, key)
        a.errorbar(tokens, med, yerr=err, marker="o", color=c, label=label)
    _token_axis(a, tokens)
    a.set(ylabel="ms (median, IQR)", title="prefill and time to first token")
    a.set_ylim(bottom=0)
    a.legend()
    a = ax[0, 1]
    med, err = _spread(samples, tokens, "decode_tok_s")
    a.errorbar(tokens, med, yerr=err, marker="o", color="#2ca02c")
    _token_axis(a, tokens)
    a.set(ylabel="tokens / s (median, IQR)", title="decode throughput")
    a = ax[1, 0]
    pts = sorted(table, key=lambda r: r.num("image tokens"))
    xs = [int(r.num("image tokens")) for r in pts]
    e2e = [r.num("e2e speedup") for r in pts]
    has_reps = bool(samples) and "e2e_ms" in samples[0]
    ci = [speedup_interval(samples, base, t) if t != base and has_reps else (m, m) for t, m in zip(xs, e2e)]
    a.errorbar(xs, e2e, yerr=[[m - lo for m, (lo, _) in zip(e2e, ci)], [hi - m for m, (_, hi) in zip(e2e, ci)]],
               marker="o", lw=2.0, capsize=3, zorder=3, label="ours: end to end" + (" (bootstrap 95% CI)" if has_reps else ""))
    for key, label, marker in (("TTFT speedup", "time to first token", "s"),
                               ("e2e CPU-time speedup", "end to end, CPU time", "^")):
        if key in pts[0]:
            a.plot(xs, [r.num(key) for r in pts], marker=marker, lw=1.0, alpha=0.8, label=f"ours: {label}")
    at = xs.index(paper_tokens) if paper_tokens in xs else None
    if at is not None:  # the headline number with its interval, written where it is read
        a.annotate(f"{e2e[at]:.2f}x [{ci[at][0]:.2f}, {ci[at][1]:.2f}]", (paper_tokens, e2e[at]),
                   xytext=(6, -14), textcoords="offset points", fontsize=7)
    if paper_speedup is not None:
        a.axhline(paper_speedup, **REFERENCE)
        a.plot([paper_tokens], [paper_speedup], "*", color="k", ms=11, label=f"paper: {paper_speedup:.3f}x (e2e)")
    _token_axis(a, xs)
    a.set(ylabel=f"speed-up vs {base} tokens", title="speed-up from fewer image tokens")
    a.legend()
    a = ax[1, 1]
    grids = [int(r["grid"].split("x")[0]) for r in comp]
    a.plot(grids, [r.num("dct ms") for r in comp], marker="o", color=COLORS["dct"], label="FFT (Makhoul)")
    a.plot(grids, [r.num("dct_dense ms") for r in comp], marker="s", color=COLORS["avgpool"], label="dense DCT matrix")
    log_axis(a, "x", base=2, ticks=grids)
    log_axis(a, "y")
    a.set(xlabel="grid side N (N x N tokens)", ylabel="ms (median)",
          title=f"compressor alone, C={int(comp[0].num('channels'))}")
    a.legend()
    fig.suptitle(title)
    return save(fig, out_png)


def lowpass_error_figure(lowpass_csv: Path, out_png: Path, title: str) -> list[Path]:
    """Energy kept by the DCT block and the reconstruction error of each compressor vs tokens kept."""
    rows = read_rows(lowpass_csv, ["method", "tokens", "rel. L2 error"])
    tokens = sorted({int(r.num("tokens")) for r in rows})
    fig, ax = figure(7.6, 3.0, ncols=2)
    a = ax[0, 0]
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((int(r.num("tokens")), r.num("rel. L2 error")) for r in rows if r["method"] == method)
        a.plot(*zip(*pts), marker="o", color=COLORS.get(method), label=method)
    _token_axis(a, tokens)
    a.set(ylabel="relative L2 error", title="reconstruction error (lower is better)")
    a.set_ylim(bottom=0)
    a.legend()
    a = ax[0, 1]
    pts = sorted((int(r.num("tokens")), 100 * r.num("energy kept")) for r in rows
                 if r["method"] == "dct" and "energy kept" in r)
    if pts:
        a.plot(*zip(*pts), marker="o", color=COLORS["dct"], label="DCT low-pass block")
    _token_axis(a, tokens)
    a.set(ylabel="energy kept (%)", title="signal energy in the kept k x k block")
    fig.suptitle(title)
    return save(fig, out_png)


def speed_notes(run_dir: Path, record: dict[str, Any]) -> dict[str, str]:
    """The report's note beside the speed claim: what model was timed and the bootstrap interval of the
    end-to-end speed-up at 64 tokens (empty when the CSV is missing)."""
    run_dir = Path(run_dir)
    if not (run_dir / "speed_samples.csv").exists():
        return {}
    samples = read_rows(run_dir / "speed_samples.csv", ["image_tokens", "e2e_ms"])
    base = max(int(r.num("image_tokens")) for r in samples)
    lo, hi = speedup_interval(samples, base, 64)
    weights = {"random_init": "random weights, scaled-down model", "random": "random weights"}.get(
        str(_get(record, "config", "model", "source", default="")), "")
    where = f"{weights}, " if weights else ""
    return {"generation_speedup": f"{where}{_get(record, 'env', 'device_name', default='?')}; bootstrap 95% "
                                  f"interval over repetitions [{lo:.2f}, {hi:.2f}]"}


def flops_notes(run_dir: Path, record: dict[str, Any]) -> dict[str, str]:
    """The report's note beside the FLOPs claim: the counting convention of the headline reduction, how many
    conventions were computed, and the physical count (empty when a CSV is missing)."""
    run_dir = Path(run_dir)
    if not (run_dir / "flops_crosscheck.csv").exists():
        return {}
    conv = str(_get(record, "config", "experiment", "paper_convention", default="llm_vit_proj_ffn2_prefill"))
    n_conv = len(read_rows(run_dir / "flops_match.csv", ["convention"])) if (run_dir / "flops_match.csv").exists() else 0
    rows = read_rows(run_dir / "flops_crosscheck.csv", ["model", "image_tokens", "text_tokens", "FlopCounterMode TFLOPs"])
    ref = [r for r in rows if "7b" in r["model"].lower()] or rows
    by = {int(r.num("image_tokens")): r.num("FlopCounterMode TFLOPs") for r in ref}
    if 64 not in by or not by:
        return {}
    phys = 1 - by[64] / by[max(by)]
    of = f"of the {n_conv} conventions computed, " if n_conv else ""
    return {"flops_reduction_64": f"counting convention `{conv}` ({_conv_label(conv)}): {of}the one that matches "
                                  f"the paper; the physical count of the whole model by torch's FlopCounterMode "
                                  f"({int(ref[0].num('text_tokens'))} text tokens, LM head included) gives "
                                  f"{100 * phys:.1f}%"}


# The drawers the experiments register (`@experiment(figures=...)`): (run folder, record or `run_view` of a
# running experiment) -> the PNG and PDF files written. A CSV that is missing or corrupt raises
# FigureDataError naming it.

def draw_flops(run_dir: Path, record: dict[str, Any]) -> list[Path]:
    run_dir = Path(run_dir)
    conv = str(_get(record, "config", "experiment", "paper_convention", default="llm_vit_proj_ffn2_prefill"))
    return flops_figure(run_dir / "flops_long.csv", run_dir / "flops.png", conv, _paper_value("flops_reduction_64"))


def draw_speed(run_dir: Path, record: dict[str, Any]) -> list[Path]:
    run_dir, cfg = Path(run_dir), record.get("config") or {}
    e = _get(cfg, "experiment", default={})
    machine = _get(record, "env", "device_name", default="?")
    weights = {"random_init": " (random weights, scaled-down model)",
               "random": " (random weights, the paper's architecture)"}.get(_get(cfg, "model", "source"), "")
    title = (f"{_get(cfg, 'model', 'name', default='?')}{weights}: generation speed vs image tokens\n"
             f"{machine}, batch {e.get('batch', '?')}, G={e.get('new_tokens', '?')}")
    return speed_figure(run_dir, run_dir / "speed.png", title, _paper_value("generation_speedup"))


def draw_lowpass(run_dir: Path, record: dict[str, Any]) -> list[Path]:
    run_dir, cfg = Path(run_dir), record.get("config") or {}
    image = _get(cfg, "experiment", "image", default="the image")
    side = _get(cfg, "fourier", "base_side", default="?")
    return lowpass_error_figure(run_dir / "lowpass.csv", run_dir / "lowpass_error.png",
                                f"What each compressor keeps of {image} ({side}x{side} patch tokens)")
