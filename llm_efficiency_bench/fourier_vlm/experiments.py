"""Fourier-VLM experiments: FLOPs (Claim 1), generation speed (Claim 2), and a picture of the low-pass.

* `flops`: analytic counts (llm_efficiency_bench.fourier_vlm.flops) for LLaVA-1.5-7B/13B at 576/256/144/64/36 image tokens under
  every counting convention, which convention lands on the paper's 83.8%, and a FlopCounterMode cross-check
  on the same architectures built on the meta device (no weights). Metrics `flops.<tokens>[.<convention>]`
  (TFLOPs) and `flops_reduction.<tokens>.<convention>` for the 7B.
* `speed`: prefill latency, time to first token, decode tokens/s and end-to-end time for G new tokens at
  576 tokens and each budget, interleaved repetitions, medians and IQR; plus the compressor alone (FFT vs
  dense DCT) over grid sizes. Metrics `prefill_ms.<t>`, `ttft_ms.<t>`, `decode_tok_s.<t>`, `e2e_ms.<t>`,
  `e2e_speedup.<t>`.
* `lowpass`: a real photo cut into the 24x24 patch grid, compressed at each k by the DCT low-pass, average
  pooling and uniform dropping; what each keeps (figure) and how much (energy kept, reconstruction error).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.fourier_vlm.flops import (Convention, all_conventions, arch_from_llava_config, convention_flops, exact_flops,
                              reduction)
from llm_efficiency_bench.core.models import resolve_device, resolve_dtype
from llm_efficiency_bench.core.plots import figure
from llm_efficiency_bench.core.references import paper_value
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.random_models import speed_note
from llm_efficiency_bench.core.timing import DeviceClock, StreamerMarks, is_cuda, summarize, time_call
from llm_efficiency_bench.core.validate import ListOf, MapOf, Num, Rule, Text, nonneg_int, pos_float, pos_int
from llm_efficiency_bench.fourier_vlm import figures
from llm_efficiency_bench.fourier_vlm.compress import TokenCompressor
from llm_efficiency_bench.fourier_vlm.llava import apply_compressor, image_token_count, llava_config, prompt_ids, random_llava
from llm_efficiency_bench.fourier_vlm.settings import MAX_NEW_TOKENS

PAPER = "fourier_vlm"


def _budgets(ctx: RunContext) -> list[int]:
    """Kept sides k from `fourier.budgets` (checked against the base grid up front: settings.py RULES)."""
    return [int(k) for k in ctx.cfg.fourier.budgets]


def _is_square_grid(tokens: list[int], side: int) -> bool:
    """Every count is k*k image tokens for some k <= side."""
    return all(math.isqrt(int(t)) ** 2 == int(t) and math.isqrt(int(t)) <= int(side) for t in tokens)


@dataclass
class FlopsSettings:
    """Claim 1's settings (`experiment.*`); the budgets are the compressor's (`fourier.budgets`)."""

    text_tokens: list[int] = setting([0, 64], ListOf(nonneg_int(hi=1 << 20), unique=True),
                                     "text tokens after the image; 0 = image tokens only (the paper's convention)")
    decode_tokens: int = setting(128, nonneg_int(hi=1 << 20), "G generated tokens in the prefill+decode conventions")
    crosscheck_tokens: list[int] = setting([576, 256, 144, 64, 36], ListOf(pos_int(hi=1 << 20), min_len=0),
                                           "image-token counts of the FlopCounterMode cross-check (meta device)")
    crosscheck_text_tokens: int = setting(32, nonneg_int(hi=1 << 20), "text tokens in the cross-check")
    paper_convention: str = setting("llm_vit_proj_ffn2_prefill", Text(),
                                    "the counting convention whose reduction is compared with the paper's")
    # Third-party re-run of Fourier-VLM on LLaVA-1.5-7B (Braco paper; shared/papers/fourier_vlm.yaml
    # third_party_rerun_llava15_7b.TFLOPs): full-pipeline prefill TFLOPs at these image-token counts.
    third_party_tflops: dict[int, float] = setting({576: 8.67, 25: 1.37, 16: 1.25, 9: 1.15, 4: 1.09},
                                                   MapOf(pos_float(hi=1e6)), "image tokens -> TFLOPs, third party")
    models: dict[str, Any] = setting({}, None, "the LLaVA configs counted (composed from configs/model/)")


FLOPS_RULES = [Rule(("crosscheck_tokens", "/fourier.base_side"), _is_square_grid,
                    "cross-check counts {0} must each be k*k image tokens for a k <= {1}", "crosscheck_tokens")]


@dataclass
class SpeedSettings:
    """Claim 2's settings (`experiment.*`); the defaults are the paper's (G = 128, 10 repetitions)."""

    new_tokens: int = setting(128, Num(int, 2, MAX_NEW_TOKENS), "G generated tokens per timed generation "
                              "(decoding is timed from the second token on, so at least 2)")
    text_tokens: int = setting(32, nonneg_int(hi=1 << 20), "text tokens after the image placeholders")
    repeats: int = setting(10, pos_int(hi=1000), "interleaved repetitions per budget")
    warmup: int = setting(2, nonneg_int(hi=100), "untimed generations per budget first")
    batch: int = setting(1, pos_int(hi=256), "prompts per generation (the paper: 1)")
    dct_grids: list[int] = setting([24, 48, 72, 96], ListOf(pos_int(hi=4096), min_len=0),
                                   "grid sides at which the compressor alone is timed (DCT vs FFT cost)")


SPEED_RULES = [
    Rule(("/fourier.method",), lambda m: m != "none",
         "speed compares compressed budgets with 576 tokens: fourier.method {0} compresses nothing",
         "/fourier.method"),
    Rule(("/fourier.budgets", "/fourier.base_side"), lambda ks, side: side not in ks,
         "budgets {0} include the full {1}x{1} grid, the baseline every budget is compared with", "/fourier.budgets"),
]


# ----------------------------------------------------------------------------------------------------- flops
def _meta_count(model_cfg: Any, tokens: int, text_tokens: int, side: int) -> float:
    """FlopCounterMode total for one LLaVA prefill at `tokens` image tokens, on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_config(model_cfg.arch))
    k = math.isqrt(tokens)
    apply_compressor(model, None if k == side else TokenCompressor("dct", k=k))
    v = model.config.vision_config
    pv = torch.empty(1, 3, v.image_size, v.image_size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        feats = model.model.get_image_features(pixel_values=pv, vision_feature_layer=-2,
                                               vision_feature_select_strategy="default")
        f = torch.cat(list(feats.pooler_output), 0)  # (tokens, d)
        if f.shape[0] != tokens:
            raise RuntimeError(f"compressor produced {f.shape[0]} tokens, expected {tokens}")
        emb = torch.empty(1, tokens + text_tokens, model.config.text_config.hidden_size, device="meta")
        out = model.model.language_model(inputs_embeds=emb)
        model.lm_head(out.last_hidden_state)  # (1, n, vocab): logits on every prompt position
    return float(fc.get_total_flops())


@experiment(settings=FlopsSettings, rules=FLOPS_RULES, figures=figures.draw_flops, notes=figures.flops_notes)
def flops(ctx: RunContext) -> None:
    """Claim 1: FLOPs of LLaVA-1.5 at each image-token budget, under each counting convention."""
    e = ctx.cfg.experiment
    # Abstract: "up to 83.8% fewer inference FLOPs" (LLaVA-1.5-7B); the number lives in the reference file.
    paper_red = paper_value(PAPER, "flops_reduction_64")
    # The table's budgets are the compressor's (`fourier.budgets`, k*k tokens each), after the uncompressed
    # baseline: one setting says which budgets every experiment uses.
    side = int(ctx.cfg.fourier.base_side)
    tokens = [side * side] + [k * k for k in _budgets(ctx) if k != side]
    G = int(e.decode_tokens)
    convs = all_conventions(tuple(int(t) for t in e.text_tokens))
    paper_conv = Convention.parse(str(e.paper_convention))
    rows, long_rows, match_rows = [], [], []
    archs = {}
    for key, mcfg in e.models.items():
        arch = arch_from_llava_config(llava_config(mcfg.arch), str(mcfg.name))
        archs[key] = arch
        for conv in convs:
            counts = {t: convention_flops(arch, t, conv, G) for t in tokens}
            base = counts[tokens[0]]["total"]
            row: dict[str, Any] = {"model": mcfg.name, "convention": conv.name}
            for t in tokens:
                red = reduction(base, counts[t]["total"])
                row[f"TFLOPs@{t}"] = counts[t]["total"] / 1e12
                if t != tokens[0]:
                    row[f"red@{t} %"] = 100 * red
                long_rows.append({"model": mcfg.name, "convention": conv.name, "image_tokens": t,
                                  "decode_tokens": G if conv.phase == "prefill_decode" else 0,
                                  **{p: v for p, v in counts[t].items()}, "reduction": red})
                if key == "llava15_7b":
                    ctx.metric(f"flops.{t}.{conv.name}", counts[t]["total"] / 1e12, "TFLOPs", "lower",
                               note="FastV per-layer count, 2 FLOPs per MAC")
                    if t != tokens[0]:
                        ctx.metric(f"flops_reduction.{t}.{conv.name}", red, "fraction", "higher",
                                   note=f"vs {tokens[0]} tokens, LLaVA-1.5-7B")
                    if conv == paper_conv:
                        ctx.metric(f"flops.{t}", counts[t]["total"] / 1e12, "TFLOPs", "lower",
                                   note=f"convention {conv.name}")
                        if t != tokens[0]:
                            ctx.metric(f"flops_reduction.{t}", red, "fraction", "higher",
                                       note=f"convention {conv.name}")
                if key == "llava15_13b" and conv == paper_conv and t != tokens[0]:
                    ctx.metric(f"flops_reduction_13b.{t}", red, "fraction", "higher", note=f"convention {conv.name}")
            rows.append(row)
            if key == "llava15_7b" and 64 in counts:
                r64 = reduction(base, counts[64]["total"])
                match_rows.append({"convention": conv.name, "reduction@64 %": 100 * r64,
                                   "paper %": 100 * paper_red,
                                   "delta (points)": 100 * (r64 - paper_red)})
    match_rows.sort(key=lambda r: abs(r["delta (points)"]))
    best = match_rows[0]["convention"] if match_rows else "?"
    ctx.log(f"convention closest to the paper's 83.8% at 64 tokens: {best} "
            f"({match_rows[0]['reduction@64 %']:.2f}%)" if match_rows else "no 64-token budget in the table")
    notes = [f"FLOPs = 2 x MACs. FastV per-layer count 4nd^2 + 2n^2d + f*ndm (f = FFN matrices), summed over "
             f"layers; vision encoder over 577 tokens (CLS included), projector on the kept tokens; no LM head.",
             f"prefill_decode adds G={G} generated tokens with a KV cache; _txtN adds N text tokens to the prompt.",
             f"Closest to the paper's 83.8% (LLaVA-1.5-7B, 64 tokens): **{best}**."]
    ctx.table("flops_conventions", "FLOPs of LLaVA-1.5 by image tokens and counting convention", rows, notes)
    ctx.table("flops_match", "Which convention gives the paper's 83.8% at 64 tokens (LLaVA-1.5-7B)", match_rows,
              [f"paper: abstract of arXiv 2508.06038; the only convention within 0.3 points is {best}"
               if match_rows and abs(match_rows[0]["delta (points)"]) <= 0.3 else "no convention within 0.3 points"])
    ctx.csv("flops_long", long_rows)

    # Cross-check: every matmul of the transformers model, counted by FlopCounterMode on the meta device.
    check_rows = []
    text = int(e.crosscheck_text_tokens)
    side = int(ctx.cfg.fourier.base_side)
    worst = 0.0
    for key, mcfg in e.models.items():
        for t in [int(t) for t in e.crosscheck_tokens]:
            measured = _meta_count(mcfg, t, text, side)
            ex = exact_flops(archs[key], t, text)
            rel = measured / ex.total - 1
            worst = max(worst, abs(rel))
            check_rows.append({"model": mcfg.name, "image_tokens": t, "text_tokens": text,
                               "analytic TFLOPs": ex.total / 1e12, "FlopCounterMode TFLOPs": measured / 1e12,
                               "rel. diff %": 100 * rel})
    # Paper | ours: the paper's headline and its reconstruction; a third-party full-pipeline count.
    arch7 = archs.get("llava15_7b")
    if arch7 is not None:
        base = convention_flops(arch7, tokens[0], paper_conv, G)["total"]
        pv_rows = []
        for t in tokens[1:]:
            ours = reduction(base, convention_flops(arch7, t, paper_conv, G)["total"])
            pv_rows.append({"image tokens": t, "paper %": 100 * paper_red if t == 64 else None,
                            f"ours % ({paper_conv.name})": 100 * ours})
        ctx.table("flops_paper_vs_ours", "FLOPs reduction vs LLaVA-1.5-7B at 576 tokens: paper | ours", pv_rows,
                  ["paper: abstract, 'up to 83.8% fewer inference FLOPs' (the budget is not stated; 64 tokens "
                   "is the budget this convention maps it to)"])
        tp = {int(k): float(v) for k, v in (e.get("third_party_tflops") or {}).items()}
        if tp:
            tp_rows = [{"image tokens": t, "third-party TFLOPs": v,
                        f"ours exact prefill TFLOPs (+{text} text)": exact_flops(arch7, t, text, lm_head_tokens=1).total / 1e12}
                       for t, v in sorted(tp.items(), reverse=True)]
            ctx.table("flops_third_party", "Full-pipeline prefill TFLOPs, LLaVA-1.5-7B: third-party re-run | ours",
                      tp_rows, ["third party: Braco paper's re-run of Fourier-VLM (its prompt length is unknown); "
                                "ours: every matmul (ViT, projector, LLM) + LM head on the last position"])
    ctx.metric("flops_crosscheck.max_rel_err", worst, "fraction", "lower",
               note="analytic exact count vs torch.utils.flop_counter on the meta-device model")
    ctx.table("flops_crosscheck", "Analytic count vs FlopCounterMode (meta device, no weights)", check_rows,
              ["analytic: patch embedding, all vision layers, projector, LLM (real q/kv widths, gated FFN), "
               "LM head on every prompt position; the DCT itself is not a matmul and is counted by neither"],
              digits=4)

    # Drawn from flops_long.csv by the same code the report uses, so run and report figures are identical.


# ----------------------------------------------------------------------------------------------------- speed
def _load_speed_model(ctx: RunContext) -> tuple[Any, torch.dtype, str]:
    cfg = ctx.cfg
    dtype, device = resolve_dtype(cfg.dtype), resolve_device(cfg.device)
    source = cfg.model.get("source")
    if source == "random":  # a paper architecture with seeded random weights, built on the device in dtype
        from llm_efficiency_bench.core.models import load_model

        return load_model(cfg.model, cfg.dtype, cfg.device, speed_only=True).model, dtype, device
    if source == "random_init":
        model = random_llava(cfg.model.arch, seed=int(cfg.seed), dtype=dtype).to(device)
    elif source == "hub":
        from llm_efficiency_bench.fourier_vlm.llava import load_paper_llava

        model = load_paper_llava(cfg.model, dtype, device)
    else:
        raise ConfigError("model.source", f"speed needs a LLaVA model (random, random_init or hub), not {source!r}")
    return model, dtype, device


@experiment(settings=SpeedSettings, rules=SPEED_RULES, figures=figures.draw_speed, notes=figures.speed_notes)
def speed(ctx: RunContext) -> None:
    """Claim 2: prefill, TTFT, decode and end-to-end generation time at each budget vs 576 tokens."""
    e, cfg = ctx.cfg.experiment, ctx.cfg
    # Abstract: "boosts generation speed by 31.2%", stored as the end-to-end speed-up 1.312 (reference file).
    paper_faster = round(paper_value(PAPER, "generation_speedup") - 1, 6)
    model, dtype, device = _load_speed_model(ctx)
    G, T, R, B = int(e.new_tokens), int(e.text_tokens), int(e.repeats), int(e.batch)
    side = int(model.config.vision_config.image_size) // int(model.config.vision_config.patch_size)
    if side != int(cfg.fourier.base_side):
        raise ConfigError("fourier.base_side", f"the model's patch grid is {side}x{side}, not {cfg.fourier.base_side}")
    ks = _budgets(ctx)
    n_params = sum(p.numel() for p in model.parameters())
    ctx.log(f"model {cfg.model.name}: {n_params / 1e6:.1f}M params, {dtype}, {device}, grid {side}x{side}, "
            f"threads {torch.get_num_threads()}")
    g = torch.Generator().manual_seed(int(cfg.seed))
    vs = model.config.vision_config.image_size
    pixels = torch.randn(B, 3, vs, vs, generator=g).to(device, dtype)
    vocab = int(model.config.text_config.vocab_size)
    text = torch.randint(3, min(vocab, int(model.config.image_token_id)) - 1, (T,), generator=g)
    setups = {}
    for k in [side] + ks:
        comp = None if k == side else TokenCompressor(str(cfg.fourier.method), k=k, rescale=bool(cfg.fourier.rescale))
        n_img = image_token_count(model, comp)
        ids = prompt_ids(model, n_img, text, B).to(device)
        emb = torch.randn(B, ids.shape[1], model.config.text_config.hidden_size, generator=g).to(device, dtype)
        setups[n_img] = (comp, ids, emb)
    lm = model.model.language_model
    clock = DeviceClock(device)  # CUDA events on CUDA, perf_counter on CPU
    on_cuda = is_cuda(device)
    peak_mb: dict[int, float] = {}

    def run_generate(n_img: int) -> dict[str, float]:
        comp, ids, _ = setups[n_img]
        apply_compressor(model, comp)
        marks = StreamerMarks(clock)
        with torch.no_grad():
            if on_cuda:  # peak memory per budget: reset between the budgets (weights + KV + activations)
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            c0, t0 = time.process_time(), clock.mark()
            out = model.generate(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=G, min_new_tokens=G, do_sample=False, streamer=marks)
            t1 = clock.mark()
            e2e = clock.ms(t0, t1)  # waits for the last kernel on CUDA
            c1 = time.process_time()
            if on_cuda:
                peak_mb[n_img] = max(peak_mb.get(n_img, 0.0), torch.cuda.max_memory_allocated() / 2**20)
        if out.shape[1] - ids.shape[1] != G or len(marks.times) != G + 1:
            raise RuntimeError(f"expected {G} new tokens, got {out.shape[1] - ids.shape[1]}")
        return {"ttft_ms": clock.ms(t0, marks.times[1]), "e2e_ms": e2e, "e2e_cpu_ms": 1e3 * (c1 - c0),
                "decode_tok_s": (G - 1) / (clock.ms(marks.times[1], marks.times[-1]) / 1e3)}

    def run_prefill(n_img: int) -> float:
        emb = setups[n_img][2]
        with torch.no_grad():
            return clock.time(lambda: model.lm_head(lm(inputs_embeds=emb, use_cache=False).last_hidden_state[:, -1:]))

    budgets = list(setups)
    # Progress over every timed generation (warm-up included): a long G is visible, never silent.
    bar = tqdm(total=(int(e.warmup) + R) * len(budgets), desc=f"speed G={G}", unit="gen", mininterval=2.0,
               leave=False)
    for _ in range(int(e.warmup)):
        for n in budgets:
            run_generate(n)
            run_prefill(n)
            bar.update(1)
    samples: dict[int, dict[str, list[float]]] = {n: {"ttft_ms": [], "e2e_ms": [], "decode_tok_s": [],
                                                      "prefill_ms": [], "e2e_cpu_ms": []} for n in budgets}
    rng = random.Random(int(cfg.seed))
    t_start = time.time()
    for rep in range(R):
        order = budgets[:]
        rng.shuffle(order)  # interleaved: every repetition visits every budget, in a new order
        for n in order:
            s = run_generate(n)
            for key, v in s.items():
                samples[n][key].append(v)
            samples[n]["prefill_ms"].append(run_prefill(n))
            bar.update(1)
        ctx.log(f"repetition {rep + 1}/{R} done ({time.time() - t_start:.0f} s)")
    bar.close()
    base = budgets[0]
    med = {n: {key: summarize(v) for key, v in d.items()} for n, d in samples.items()}
    rows = []
    for n in budgets:
        m = med[n]
        sp = m["e2e_ms"].median_ms
        row = {"image tokens": n, "prompt tokens": int(setups[n][1].shape[1]),
               "prefill ms": m["prefill_ms"].median_ms, "prefill IQR": m["prefill_ms"].iqr_ms,
               "TTFT ms": m["ttft_ms"].median_ms, "TTFT IQR": m["ttft_ms"].iqr_ms,
               "decode tok/s": m["decode_tok_s"].median_ms, "decode IQR": m["decode_tok_s"].iqr_ms,
               f"e2e ms (G={G})": sp, "e2e IQR": m["e2e_ms"].iqr_ms,
               "e2e speedup": med[base]["e2e_ms"].median_ms / sp,
               "TTFT speedup": med[base]["ttft_ms"].median_ms / m["ttft_ms"].median_ms,
               "e2e CPU-time speedup": med[base]["e2e_cpu_ms"].median_ms / m["e2e_cpu_ms"].median_ms}
        rows.append(row)
        note = speed_note(cfg.model, f"median of {R} interleaved repetitions ({clock.kind}), batch {B}, G={G}, "
                                     f"{T} text tokens")
        ctx.metric(f"prefill_ms.{n}", m["prefill_ms"].median_ms, "ms", "lower", note=note + "; LLM only",
                   stderr=m["prefill_ms"].iqr_ms / 1.349 / math.sqrt(R))
        ctx.metric(f"ttft_ms.{n}", m["ttft_ms"].median_ms, "ms", "lower", note=note,
                   stderr=m["ttft_ms"].iqr_ms / 1.349 / math.sqrt(R))
        ctx.metric(f"decode_tok_s.{n}", m["decode_tok_s"].median_ms, "tok/s", "higher", note=note)
        ctx.metric(f"e2e_ms.{n}", sp, "ms", "lower", note=note, stderr=m["e2e_ms"].iqr_ms / 1.349 / math.sqrt(R))
        if n in peak_mb:
            row["peak memory MiB"] = peak_mb[n]
            ctx.metric(f"peak_mem_mb.{n}", peak_mb[n], "MiB", "lower", note=speed_note(
                cfg.model, "torch.cuda.max_memory_allocated during generate, reset between budgets"))
        if n != base:
            ctx.metric(f"e2e_speedup.{n}", row["e2e speedup"], "x", "higher", kind="timing", note=speed_note(
                cfg.model, f"median e2e at {base} / at {n} tokens; paper: 31.2% faster generation (7B, GPU)"))
            ctx.metric(f"ttft_speedup.{n}", row["TTFT speedup"], "x", "higher", kind="timing",
                       note=speed_note(cfg.model, f"vs {base} tokens"))
            ctx.metric(f"e2e_cpu_speedup.{n}", row["e2e CPU-time speedup"], "x", "higher", kind="timing", note=speed_note(
                cfg.model, f"process CPU time (all threads) at {base} / at {n}: robust to other load on the machine"))
    machine = ctx.record.env.get("device_name", device)
    env = f"{machine}, {torch.get_num_threads()} threads, {str(dtype).replace('torch.', '')}, batch {B}, G={G}"
    ctx.table("speed", f"Generation speed — {cfg.model.name} ({n_params / 1e6:.1f}M params, random weights "
              f"if not hub), {env}, {clock.kind}", rows,
              [f"paper: 31.2% faster generation than LLaVA-v1.5-7B (GPU, setup not retrievable) = e2e speedup 1.312",
               f"prefill = LLM forward over the prompt embeddings (no vision); TTFT = pixels to first token "
               f"(vision, compressor, projector, prefill); decode tok/s over the G-1 later tokens; IQR = spread",
               "repetitions interleaved in a seeded random order; wall-clock times include time the process waited "
               "for a core: on a loaded machine the CPU-time speedup (process CPU time, all threads) is the "
               "steadier ratio"])
    tag = f"{cfg.model.name}, {machine}, batch {B}, G={G}"
    ctx.table("speed_paper_vs_ours", "Generation speed-up vs the uncompressed model: paper | ours",
              [{"image tokens": n, "paper % faster": 100 * paper_faster if n == 64 else None,
                "ours % faster (e2e)": 100 * (r["e2e speedup"] - 1), "ours % faster (TTFT)": 100 * (r["TTFT speedup"] - 1),
                "ours % faster (e2e CPU time)": 100 * (r["e2e CPU-time speedup"] - 1),
                "setup": tag} for n, r in zip(budgets, rows) if n != base],
              ["paper: LLaVA-1.5-7B, GPU, G and batch not retrievable; budget not stated (64 assumed)",
               "% faster = (time at 576 tokens / time at this budget - 1); medians of interleaved repetitions"])
    ctx.csv("speed_samples", [{"image_tokens": n, "rep": i, **{k: v[i] for k, v in d.items()}}
                              for n, d in samples.items() for i in range(R)])

    # The compressor alone: FFT path vs dense DCT matrices over grid sizes (C = the vision width).
    c = int(model.config.vision_config.hidden_size)
    comp_rows = []
    for n_side in [int(x) for x in e.dct_grids]:
        x = torch.randn(1, n_side * n_side, c, generator=g).to(device)
        k = max(1, n_side // 3)
        row = {"grid": f"{n_side}x{n_side}", "channels": c, "k": k}
        for method in ("dct", "dct_dense"):
            tc = TokenCompressor(method, k=k)
            t = time_call(lambda: tc(x), repeats=max(3, R), warmup=1, device=device)
            row[f"{method} ms"] = t.median_ms
            ctx.metric(f"compress_ms.{method}.{n_side}", t.median_ms, "ms", "lower",
                       note=speed_note(cfg.model, f"C={c}, k={k}, {clock.kind}"))
        row["dense / fft"] = row["dct_dense ms"] / row["dct ms"]
        comp_rows.append(row)
    ctx.table("compressor_time", "Compressor alone: FFT (Makhoul) vs dense DCT matrix", comp_rows,
              [f"one image, fp32, {device}, median ({clock.kind}); the dense path builds N x N matrices, the FFT "
               "path none"], digits=3)

    # Drawn from speed.csv, speed_samples.csv and compressor_time.csv by the code the report uses.
