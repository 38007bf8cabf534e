"""Stages 2-3: sampled solutions with token confidences, and their division into steps (paper §3.1).

`samples_<split>`: N sampled solutions per question (PRM-data questions and test questions), each token with
its confidence (the untempered probability the policy gave it). `division`: one global threshold tau over
the pooled PRM-data confidences, and the step boundaries of every solution for each split rule
(`confidence`, `newline`, `random`; Fig. 2, Table 3).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from llm_efficiency_bench.adaptive_step import steps as S
from llm_efficiency_bench.adaptive_step.generation import SAMPLER, sample
from llm_efficiency_bench.adaptive_step.policy import Policy
from llm_efficiency_bench.adaptive_step.stage import Log, bar, stage
from llm_efficiency_bench.adaptive_step.tasks import Problem
from llm_efficiency_bench.core.cache import CacheEntry, save_atomic, to_plain
from llm_efficiency_bench.core.checkpoint import Checkpoint


def samples_key_obj(cfg: Any, policy_key: str, split: str) -> dict[str, Any]:
    """What determines `samples_<split>`: the policy, the task, how many questions / samples, sampling settings."""
    return {"policy": policy_key, "task": to_plain(cfg.task), "n_q": _n_questions(cfg, split),
            "n_s": _n_samples(cfg, split), "temp": float(cfg.method.temperature), "max_new": int(cfg.scale.max_new),
            "seed": int(cfg.seed), "sampler": SAMPLER}


def _n_questions(cfg: Any, split: str) -> int:
    return int({"prm": cfg.scale.prm_questions, "val": cfg.scale.get("val_questions", 0)}.get(split, cfg.scale.test_questions))


def _n_samples(cfg: Any, split: str) -> int:
    return int({"prm": cfg.scale.prm_samples, "val": cfg.scale.get("val_samples", 0)}.get(split, cfg.scale.test_samples))


def boundaries_of(pol: Policy, rows: list[dict[str, Any]], tau: float, rng: random.Random) -> dict[str, list[list[int]]]:
    """Step boundaries of every solution in `rows` under every split rule (one `rng` for the random split)."""
    per: dict[str, list[list[int]]] = {sp: [] for sp in S.SPLITS}
    for r in rows:
        texts = pol.token_texts(r["ids"])
        for sp in S.SPLITS:
            per[sp].append(S.boundaries_for(sp, r["conf"], texts, tau, rng))
    return per


def division_key_obj(cfg: Any, sample_keys: Sequence[str]) -> dict[str, Any]:
    """What determines `division`: both sample sets, the percentile, the seed (random split points)."""
    return {"samples": list(sample_keys), "pct": float(cfg.method.percentile), "seed": int(cfg.seed)}


def sample_solutions(cfg: Any, pol: Policy, split: str, log: Log) -> tuple[list[Problem], list[dict[str, Any]], CacheEntry]:
    """Stage 2 (cached as `samples_<split>`, resumable per batch of questions).

    Returns:
        (problems, rows, entry); a row has q (problem index), ids, conf, finished, correct.
    """
    n_q, n_s = _n_questions(cfg, split), _n_samples(cfg, split)
    temp = float(cfg.method.temperature)
    probs = pol.task.load(split, n_q)
    entry = stage(cfg, f"samples_{split}", samples_key_obj(cfg, pol.key, split))

    def build(work: Path) -> dict[str, Any]:
        ck = Checkpoint(work, "partial", entry.key)
        state = ck.load() or {"rows": [], "next_q": 0}
        qpb = max(1, int(cfg.scale.batch) // n_s)  # questions per batch
        t0 = time.time()
        starts = list(range(state["next_q"], n_q, qpb))
        for s in bar(starts, len(starts), f"samples[{split}]", cfg.pipeline.progress):
            chunk = list(range(s, min(n_q, s + qpb)))
            gen = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + s)
            prompts = [pol.prompt_ids(probs[q]) for q in chunk for _ in range(n_s)]
            outs = sample(pol.model, prompts, int(cfg.scale.max_new), pol.eos_id, temp, gen)
            qs = [chunk[j // n_s] for j in range(len(outs))]
            ok = pol.task.check_batch([pol.decode(o.ids) for o in outs], [probs[q] for q in qs])  # one sandbox
            for o, q, c in zip(outs, qs, ok):
                state["rows"].append({"q": q, "ids": o.ids, "conf": o.conf, "finished": o.finished, "correct": bool(c)})
            state["next_q"] = chunk[-1] + 1
            ck.save(state)
        rows = state["rows"]
        save_atomic(work / "rows.pt", rows)
        ck.clear()
        acc = float(np.mean([r["correct"] for r in rows]))
        log(f"samples[{split}]: {len(rows)} solutions, accuracy {acc:.3f}")
        return {"rows": len(rows), "sample_acc": acc, "seconds": time.time() - t0}

    entry.get_or_build(build)
    return probs, entry.load("rows.pt"), entry


def divide(cfg: Any, pol: Policy, prm_rows: list[dict[str, Any]], test_rows: list[dict[str, Any]],
           sample_keys: Sequence[str], log: Log) -> dict[str, Any]:
    """Stage 3 (cached as `division`): tau from the pooled PRM-data confidences; boundaries per split for
    both sets (§3.1); and the token types at confidence split points vs all tokens (§5: digits / operators
    are over-represented)."""
    pct = float(cfg.method.percentile)
    entry = stage(cfg, "division", division_key_obj(cfg, sample_keys))

    def build(work: Path) -> dict[str, Any]:
        tau = S.global_threshold([r["conf"] for r in prm_rows], pct)
        out: dict[str, Any] = {"tau": tau, "percentile": pct}
        for name, rows in (("prm", prm_rows), ("test", test_rows)):
            out[name] = boundaries_of(pol, rows, tau, random.Random(int(cfg.seed) * 31 + (0 if name == "prm" else 1)))
        types_all: dict[str, int] = {}
        types_split: dict[str, int] = {}
        for r, bnd in zip(prm_rows, out["prm"]["confidence"]):
            texts = pol.token_texts(r["ids"])
            for t in texts:
                k = S.token_type(t)
                types_all[k] = types_all.get(k, 0) + 1
            for b in bnd:
                k = S.token_type(texts[b])
                types_split[k] = types_split.get(k, 0) + 1
        out["types_all"], out["types_split"] = types_all, types_split
        save_atomic(work / "division.pt", out)
        log(f"division: tau = {tau:.4g} ({pct}th percentile of {sum(len(r['conf']) for r in prm_rows):,} tokens)")
        return {"tau": tau}

    entry.get_or_build(build)
    return entry.load("division.pt")
