"""Stages 2-3: sampled solutions with token confidences, and their division into steps (paper §3.1).

`samples_<split>`: N sampled solutions per question (PRM-data questions and test questions), each token with
its confidence (the untempered probability the policy gave it). `division`: one global threshold tau over
the pooled PRM-data confidences, and the step boundaries of every solution for each split rule
(`confidence`, `newline`, `random`; Fig. 2, Table 3).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from llm_efficiency_bench.adaptive_step import stage_settings, steps
from llm_efficiency_bench.adaptive_step.generation import sample
from llm_efficiency_bench.adaptive_step.policy import Policy
from llm_efficiency_bench.adaptive_step.stage import Log, RunOptions, bar
from llm_efficiency_bench.adaptive_step.stage_inputs import DivisionInputs, SamplesInputs
from llm_efficiency_bench.adaptive_step.tasks import Problem
from llm_efficiency_bench.core.cache import save_atomic
from llm_efficiency_bench.core.checkpoint import Checkpoint


@dataclass(frozen=True)
class Samples:
    """Stage 2's result: the questions of one split and the sampled solutions.

    Attributes:
        split: question split (prm, test, val).
        probs: the questions.
        rows: the solutions; a row has q (index into `probs`), ids, conf, finished, correct.
        key: the stage key (identifies these samples in the keys downstream).
    """

    split: str
    probs: list[Problem]
    rows: list[dict[str, Any]]
    key: str


@dataclass(frozen=True)
class Division:
    """Stage 3's result: tau and the step boundaries of the PRM-data and the test solutions per split rule.

    Attributes:
        prm, test: split rule -> boundaries of each solution of the PRM-data / test samples.
        types_all, types_split: token type -> count among all PRM-data tokens / at confidence split points.
        samples: keys of the samples divided (PRM data, test).
        key: what identifies the division in the keys downstream (`DivisionInputs.result_key`).
    """

    tau: float
    percentile: float
    prm: dict[str, list[list[int]]]
    test: dict[str, list[list[int]]]
    types_all: dict[str, int]
    types_split: dict[str, int]
    samples: tuple[str, ...]
    key: str


def samples_key_obj(cfg: Any, policy_key: str, split: str) -> dict[str, Any]:
    """The `samples_<split>` key object for a run's config: the policy, the task, how many questions / samples,
    sampling settings (`SamplesInputs.key_obj`)."""
    return stage_settings.samples_inputs(cfg, policy_key, split).key_obj()


def division_key_obj(cfg: Any, sample_keys: Sequence[str]) -> dict[str, Any]:
    """The `division` key object for a run's config: both sample sets, the percentile, the seed (random split
    points; `DivisionInputs.key_obj`)."""
    return stage_settings.division_inputs(cfg, sample_keys).key_obj()


def boundaries_of(pol: Policy, rows: list[dict[str, Any]], tau: float, rng: random.Random) -> dict[str, list[list[int]]]:
    """Step boundaries of every solution in `rows` under every split rule (one `rng` for the random split)."""
    per: dict[str, list[list[int]]] = {sp: [] for sp in steps.SPLITS}
    for r in rows:
        texts = pol.token_texts(r["ids"])
        for sp in steps.SPLITS:
            per[sp].append(steps.boundaries_for(sp, r["conf"], texts, tau, rng))
    return per


def sample_solutions(inputs: SamplesInputs, pol: Policy, run: RunOptions, log: Log) -> Samples:
    """Stage 2 (cached as `samples_<split>`, resumable per batch of questions)."""
    if pol.key != inputs.policy:
        raise ValueError(f"samples_{inputs.split}: inputs name policy {inputs.policy}, got policy {pol.key}")
    split, n_q, n_s, seed = inputs.split, inputs.n_q, inputs.n_s, inputs.seed
    probs = pol.task.load(split, n_q)
    entry = inputs.entry(run)

    def build(work: Path) -> dict[str, Any]:
        ck = Checkpoint(work, "partial", entry.key)
        state = ck.load() or {"rows": [], "next_q": 0}
        qpb = max(1, inputs.batch // n_s)  # questions per batch
        t0 = time.time()
        starts = list(range(state["next_q"], n_q, qpb))
        for s in bar(starts, len(starts), f"samples[{split}]", run.progress):
            chunk = list(range(s, min(n_q, s + qpb)))
            gen = torch.Generator().manual_seed(seed * 1_000_003 + s)
            prompts = [pol.prompt_ids(probs[q]) for q in chunk for _ in range(n_s)]
            outs = sample(pol.model, prompts, inputs.max_new, pol.eos_id, inputs.temp, gen)
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
    return Samples(split, probs, entry.load("rows.pt"), entry.key)


def divide(inputs: DivisionInputs, pol: Policy, prm: Samples, test: Samples, run: RunOptions, log: Log) -> Division:
    """Stage 3 (cached as `division`): tau from the pooled PRM-data confidences; boundaries per split for
    both sets (§3.1); and the token types at confidence split points vs all tokens (§5: digits / operators
    are over-represented)."""
    if (prm.key, test.key) != tuple(inputs.samples):
        raise ValueError(f"division: inputs name samples {inputs.samples}, got {(prm.key, test.key)}")
    pct = inputs.pct
    entry = inputs.entry(run)

    def build(work: Path) -> dict[str, Any]:
        tau = steps.global_threshold([r["conf"] for r in prm.rows], pct)
        out: dict[str, Any] = {"tau": tau, "percentile": pct}
        for name, rows in (("prm", prm.rows), ("test", test.rows)):
            out[name] = boundaries_of(pol, rows, tau, random.Random(inputs.seed * 31 + (0 if name == "prm" else 1)))
        types_all: dict[str, int] = {}
        types_split: dict[str, int] = {}
        for r, bnd in zip(prm.rows, out["prm"]["confidence"]):
            texts = pol.token_texts(r["ids"])
            for t in texts:
                k = steps.token_type(t)
                types_all[k] = types_all.get(k, 0) + 1
            for b in bnd:
                k = steps.token_type(texts[b])
                types_split[k] = types_split.get(k, 0) + 1
        out["types_all"], out["types_split"] = types_all, types_split
        save_atomic(work / "division.pt", out)
        log(f"division: tau = {tau:.4g} ({pct}th percentile of {sum(len(r['conf']) for r in prm.rows):,} tokens)")
        return {"tau": tau}

    entry.get_or_build(build)
    d = entry.load("division.pt")
    return Division(d["tau"], d["percentile"], d["prm"], d["test"], d["types_all"], d["types_split"],
                    tuple(inputs.samples), inputs.result_key())
