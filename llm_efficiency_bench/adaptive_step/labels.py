"""Stage 4: step labels of the PRM data, by Monte-Carlo rollouts (paper §3.2) or by the exact oracle.

`labels_<split>`: K rollouts continue each solution from right before every step boundary; a step's hard
label is whether any rollout reaches the right answer, its soft label the fraction that do (Math-Shepherd's
estimation, as AdaptiveStep uses it). The closing marker's label is the solution's own correctness (no
rollout needed). The rollouts are the construction cost the paper compares between split rules (§4.4).

`oracle_labels`: on the synthetic task every step can be checked exactly against the question's own chain
(`checkers.synthetic_prefix_ok`), which gives the labels a perfect annotator would write; the `bon` diagnosis compares
the MC labels against them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from llm_efficiency_bench.adaptive_step import checkers, stage_settings, steps
from llm_efficiency_bench.adaptive_step.generation import sample
from llm_efficiency_bench.adaptive_step.policy import Policy
from llm_efficiency_bench.adaptive_step.samples import Division, Samples
from llm_efficiency_bench.adaptive_step.stage import Log, RunOptions, bar
from llm_efficiency_bench.adaptive_step.stage_inputs import LabelsInputs
from llm_efficiency_bench.adaptive_step.tasks import Problem
from llm_efficiency_bench.core.cache import save_atomic
from llm_efficiency_bench.core.checkpoint import Checkpoint


# The classes a labels entry may rebuild besides plain data: `Cost`, also under the module path it has in entries
# written while the package was imported as `bench` (the same class; the entries' keys are unchanged).
_STATE_CLASSES: tuple = (steps.Cost, (steps.Cost, "bench.adaptive_step.steps.Cost"))


@dataclass(frozen=True)
class Labels:
    """Stage 4's result for one split rule.

    Attributes:
        split: the split rule whose steps are labelled.
        labels: per PRM-data solution {"hard": [...], "soft": [...]}, one per marker, the closing one last.
        cost: the construction cost of these labels.
        key: what identifies these labels in a PRM's key (`LabelsInputs.result_key`).
    """

    split: str
    labels: list[dict[str, list[float]]]
    cost: steps.Cost
    key: str


def labels_key_obj(cfg: Any, div_key: str, split: str) -> dict[str, Any]:
    """The `labels_<split>` key object for a run's config: the division (its samples), K, the rollout sampling
    settings (`LabelsInputs.key_obj`)."""
    return stage_settings.labels_inputs(cfg, div_key, split).key_obj()


def rollout_labels(inputs: LabelsInputs, pol: Policy, samples: Samples, division: Division, run: RunOptions,
                   log: Log) -> Labels:
    """Stage 4 (cached as `labels_<split>`, resumable per batch): hard / soft labels and construction cost of
    the PRM-data solutions `samples` at the boundaries of split rule `inputs.split` in `division`."""
    if division.key != inputs.division or samples.key != division.samples[0]:
        raise ValueError(f"labels_{inputs.split}: inputs name division {inputs.division}, got division "
                         f"{division.key} of samples {division.samples}, and samples {samples.key}")
    split, K = inputs.split, inputs.K
    bounds = division.prm[split]
    entry = inputs.entry(run)

    def build(work: Path) -> dict[str, Any]:
        ck = Checkpoint(work, "partial", entry.key, allow=_STATE_CLASSES)
        state = ck.load() or {"labels": [], "cost": steps.Cost(), "next": 0}
        per_batch = max(1, inputs.batch // K)
        starts = list(range(state["next"], len(samples.rows), per_batch))
        for s in bar(starts, len(starts), f"labels[{split}]", run.progress):
            _label_batch(inputs, pol, samples, bounds, list(range(s, min(len(samples.rows), s + per_batch))), s, state)
            ck.save(state)
        save_atomic(work / "labels.pt", {"labels": state["labels"], "cost": state["cost"]})
        ck.clear()
        c = state["cost"]
        log(f"labels[{split}]: {c.rollouts:,} rollouts, {c.tokens:,} tokens, {c.steps_per_solution:.2f} "
            f"steps/solution, {c.seconds:.0f} s")
        return {"rollouts": c.rollouts, "tokens": c.tokens, "seconds": c.seconds}

    entry.get_or_build(build)
    out = entry.load("labels.pt", allow=_STATE_CLASSES)
    return Labels(split, out["labels"], out["cost"], inputs.result_key())


def _label_batch(inputs: LabelsInputs, pol: Policy, samples: Samples, bounds: list[list[int]], idx: list[int], s: int,
                 state: dict[str, Any]) -> None:
    """K rollouts from every step prefix of the solutions `idx`; appends their labels and cost to `state`."""
    K = inputs.K
    probs, rows = samples.probs, samples.rows
    prompts, owners = [], []
    for i in idx:
        r = rows[i]
        base = pol.prompt_ids(probs[r["q"]])
        for j, b in enumerate(bounds[i]):
            prompts += [base + r["ids"][:b]] * K
            owners += [(i, j, b)] * K
    gen = torch.Generator().manual_seed(inputs.seed * 7_000_003 + s)
    t0 = time.time()
    outs = []
    bs = inputs.batch
    for k in range(0, len(prompts), bs):
        outs += sample(pol.model, prompts[k:k + bs], inputs.max_new, pol.eos_id, inputs.temp, gen)
    dt = time.time() - t0
    results: dict[int, list[list[bool]]] = {i: [[] for _ in bounds[i]] for i in idx}
    toks: dict[int, int] = {i: 0 for i in idx}
    oks = pol.task.check_batch([pol.decode(rows[i]["ids"][:b] + o.ids) for (i, _, b), o in zip(owners, outs)],
                               [probs[rows[i]["q"]] for i, _, _ in owners])  # code: one sandbox per batch
    for (i, j, b), o, ok in zip(owners, outs, oks):
        results[i][j].append(bool(ok))
        toks[i] += len(o.ids)
    n_roll = max(1, len(prompts))
    for i in idx:
        hard, soft = steps.mc_labels(results[i])
        final = int(rows[i]["correct"])
        state["labels"].append({"hard": hard + [final], "soft": soft + [float(final)]})
        nr = K * len(bounds[i])
        state["cost"].add(len(bounds[i]) + 1, nr, toks[i], dt * nr / n_roll)
    state["next"] = idx[-1] + 1


def oracle_labels(pol: Policy, rows: Sequence[dict[str, Any]], bounds: Sequence[Sequence[int]],
                  probs: Sequence[Problem] | None = None) -> list[list[int]]:
    """Exact step labels of synthetic solutions: one per marker, the closing one included.

    The label at a boundary judges the prefix before it (what the MC rollouts continue from): 1 while it can
    still be completed into the right solution (`checkers.synthetic_prefix_ok`). The closing marker's label is
    the oracle verdict on the whole solution (`checkers.synthetic_solution_ok`).

    Args:
        probs: the questions (`rows[i]["q"]` indexes them): the oracle reads each question's own chain, so a
            step that copies a wrong number is wrong. None: arithmetic and chaining only (the weaker,
            question-blind oracle, kept for the diagnosis).
    """
    out = []
    for r, bnd in zip(rows, bounds):
        ids = list(r["ids"])
        ref = probs[r["q"]].solution if probs is not None else None
        lab = [int(checkers.synthetic_prefix_ok(pol.decode(ids[:b]), ref)) for b in bnd]
        out.append(lab + [int(checkers.synthetic_solution_ok(pol.decode(ids), ref))])
    return out
