"""Stages 5-6: process reward models from the policy's weights, and their step scores (paper §3.3).

A PRM keeps the policy's LM head and is trained to emit `<|good|>` / `<|bad|>` right after each step marker
(ASPRM's objective); the step score at a marker is P(good) = softmax over the two label logits there. An ORM
is the same model trained on the closing marker only (labelled by the final answer).
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from llm_efficiency_bench.adaptive_step import steps
from llm_efficiency_bench.adaptive_step.generation import label_scores
from llm_efficiency_bench.adaptive_step.policy import Policy
from llm_efficiency_bench.adaptive_step.samples import Samples
from llm_efficiency_bench.adaptive_step.stage import Log, RunOptions, bar
from llm_efficiency_bench.adaptive_step.stage_inputs import PrmInputs, ScoresInputs
from llm_efficiency_bench.core.cache import save_atomic

# (input ids, marker positions, label token per marker, target P(good) per marker: 0/1, or soft MC fractions)
Example = tuple[list[int], list[int], list[int], list[float]]


def prm_examples(pol: Policy, probs, rows, bounds, labels: Sequence[Sequence[float]], orm: bool) -> list[Example]:
    """PRM training examples: prompt + solution with markers, and the label at each marker.

    Args:
        labels: per solution, one label per marker (the closing one last): 0/1, or a soft fraction (the
            label token is then `good` at >= 0.5, the target the fraction itself).
        orm: outcome reward model: only the closing marker, labelled by the final answer.
    """
    ex = []
    for r, b, lab in zip(rows, bounds, labels):
        base = pol.prompt_ids(probs[r["q"]])
        if orm:
            sol, pos = steps.insert_markers(r["ids"], [], pol.marker_id)
            y = [float(lab[-1])]
        else:
            sol, pos = steps.insert_markers(r["ids"], b, pol.marker_id)
            y = [float(v) for v in lab]
        assert len(pos) == len(y), (len(pos), len(y))
        ex.append((base + sol, [len(base) + p for p in pos], [pol.good_id if v >= 0.5 else pol.bad_id for v in y], y))
    return ex


def train_prm(inputs: PrmInputs, pol: Policy, samples: Samples, bounds: Sequence[Sequence[int]],
              labels: Sequence[Sequence[float]], run: RunOptions, log: Log) -> tuple[Any, str]:
    """Stage 5 (cached as `prm_<name>`): a PRM from the policy weights, label-token cross-entropy at the markers.

    Own loop, not TRL's PRMTrainer: TRL is not installed here, and its PRM trainer trains a
    token-classification head, while the paper keeps the LM head and trains it to emit a label token
    after each step marker (ASPRM). The loop is the paper's objective in a few lines.

    Args:
        inputs: the recipe (`epochs`, `lr`, `loss`, `batch`, `seed`, `labels`, and `early_stop`: keep the epoch
            whose validator score is highest), the policy's key, the key of the labels, the validator.
        samples: the PRM-data solutions; `bounds` their boundaries (unused by the ORM: closing marker only).
        labels: per solution, the label of each marker (MC hard 0/1, MC soft fractions, or oracle labels).

    Returns:
        (the PRM in eval mode, the stage key).
    """
    from transformers import AutoModelForCausalLM

    if pol.key != inputs.policy:
        raise ValueError(f"prm_{inputs.name}: inputs name policy {inputs.policy}, got policy {pol.key}")
    recipe = inputs.recipe
    validate = inputs.validator.score if recipe.get("early_stop") and inputs.validator is not None else None
    entry = inputs.entry(run)

    def build(work: Path) -> dict[str, Any]:
        ex = prm_examples(pol, samples.probs, samples.rows, bounds, labels, orm=(inputs.name == "orm"))
        model, info = _fit(pol, ex, recipe, inputs.name, run.progress, log, validate)
        model.save_pretrained(work / "model")
        return info

    entry.get_or_build(build)
    model = AutoModelForCausalLM.from_pretrained(entry.dir / "model").eval()
    model.bench_info = entry.info()  # steps, loss, validation curve and kept epoch (the selection table reads them)
    return model, entry.key


def _loss(logits: torch.Tensor, tgt: torch.Tensor, soft: torch.Tensor, pol: Policy,
          recipe: dict[str, Any]) -> torch.Tensor:
    """Label loss at the markers (§3.3). logits (b, L, V); tgt (b, L) label token or -100; soft (b, L) targets."""
    vocab = recipe.get("loss", "vocab") == "vocab"
    if recipe.get("labels", "hard") == "hard":
        if vocab:  # paper: cross-entropy over the whole vocabulary
            return torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1),
                                                     ignore_index=-100)
        sel = tgt != -100                                                    # (b, L)
        pair = logits[sel][:, [pol.good_id, pol.bad_id]].float()            # (m, 2) what the score uses
        return torch.nn.functional.cross_entropy(pair, (tgt[sel] == pol.bad_id).long())
    # soft MC labels (the fraction of rollouts that reach the answer) as the target P(good)
    sel = tgt != -100
    lg = logits[sel].float()                                                 # (m, V)
    lp = (torch.log_softmax(lg, -1)[:, [pol.good_id, pol.bad_id]] if vocab
          else torch.log_softmax(lg[:, [pol.good_id, pol.bad_id]], -1))     # (m, 2)
    t = soft[sel]                                                            # (m,)
    return -(t * lp[:, 0] + (1 - t) * lp[:, 1]).mean()


def _fit(pol: Policy, ex: list[Example], recipe: dict[str, Any], name: str, progress: bool, log: Log,
         validate: Callable[[Any], float] | None = None) -> tuple[Any, dict[str, Any]]:
    """The training loop: AdamW, linear decay, `prm.epochs` passes over the examples in seeded order.

    With `validate`, the model is scored after every epoch and the best epoch's weights are kept (early
    stopping on validation questions; the test questions are never seen).
    """
    from transformers import AutoModelForCausalLM

    if (pol.folder / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(pol.folder)
    else:  # a pretrained policy loaded by the suite's loader: start from a copy
        model = copy.deepcopy(pol.model)
    model.resize_token_embeddings(len(pol.tokenizer))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=float(recipe["lr"]), weight_decay=0.0)
    rng = random.Random(int(recipe["seed"]))
    bs, epochs = int(recipe["batch"]), int(recipe["epochs"])
    n_steps = epochs * ((len(ex) + bs - 1) // bs)
    step, t0, losses = 0, time.time(), []
    best: tuple[float, int, dict[str, torch.Tensor] | None] = (-float("inf"), 0, None)
    val_curve: list[float] = []
    pbar = tqdm(total=n_steps, desc=f"prm[{name}]", disable=not progress, mininterval=2.0, leave=False)
    for epoch in range(epochs):
        order = list(range(len(ex)))
        rng.shuffle(order)
        for s in range(0, len(order), bs):
            batch = [ex[i] for i in order[s:s + bs]]
            L = max(len(x[0]) for x in batch)
            ids = torch.full((len(batch), L), pol.eos_id, dtype=torch.long)  # (b, L)
            mask = torch.zeros((len(batch), L), dtype=torch.long)
            tgt = torch.full((len(batch), L), -100, dtype=torch.long)        # (b, L) label tokens at markers
            soft = torch.zeros((len(batch), L), dtype=torch.float32)         # (b, L) target P(good) at markers
            for i, (x, pos, y, t) in enumerate(batch):
                ids[i, :len(x)] = torch.tensor(x)
                mask[i, :len(x)] = 1
                tgt[i, pos] = torch.tensor(y)
                soft[i, pos] = torch.tensor(t, dtype=torch.float32)
            logits = model(input_ids=ids, attention_mask=mask).logits  # (b, L, V)
            loss = _loss(logits, tgt, soft, pol, recipe)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for g in opt.param_groups:  # linear decay
                g["lr"] = float(recipe["lr"]) * (1 - step / max(1, n_steps))
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            pbar.update(1)
        if validate is not None:
            model.eval()
            v = float(validate(model))
            model.train()
            val_curve.append(v)
            if v > best[0]:
                best = (v, epoch + 1, {k: t.detach().clone() for k, t in model.state_dict().items()})
    pbar.close()
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    n_mark = sum(len(e[2]) for e in ex)
    pos_rate = float(np.mean([int(t == pol.good_id) for e in ex for t in e[2]]))
    log(f"prm[{name}]: {step} steps, loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}, "
        f"{n_mark} markers ({pos_rate:.2f} good), {time.time() - t0:.0f} s"
        + (f"; validation by epoch {[round(v, 3) for v in val_curve]}, kept epoch {best[1]}" if val_curve else ""))
    return model, {"steps": step, "final_loss": float(np.mean(losses[-10:])), "examples": len(ex),
                   "markers": n_mark, "positive_rate": pos_rate, "seconds": time.time() - t0,
                   "val_curve": val_curve, "best_epoch": best[1] or epochs}


def score_candidates(inputs: ScoresInputs, pol: Policy, prm: Any, samples: Samples, run: RunOptions,
                     log: Log) -> list[list[float]]:
    """Stage 6 (cached as `scores`): step scores P(good) of every solution of `samples` under one PRM."""
    if samples.key != inputs.samples or len(inputs.bounds) != len(samples.rows):
        raise ValueError(f"scores: inputs name samples {inputs.samples} ({len(inputs.bounds)} boundary lists), got "
                         f"{samples.key} ({len(samples.rows)} solutions)")
    entry = inputs.entry(run)

    def build(work: Path) -> dict[str, Any]:
        seqs, poss = [], []
        for r, b in zip(samples.rows, inputs.bounds):
            base = pol.prompt_ids(samples.probs[r["q"]])
            sol, pos = steps.insert_markers(r["ids"], [] if inputs.orm else b, pol.marker_id)
            seqs.append(base + sol)
            poss.append([len(base) + p for p in pos])
        out: list[list[float]] = []
        bs = inputs.batch
        for s in bar(range(0, len(seqs), bs), (len(seqs) + bs - 1) // bs, "scores", run.progress):
            out += label_scores(prm, seqs[s:s + bs], poss[s:s + bs], pol.good_id, pol.bad_id, pol.eos_id, batch=bs)
        save_atomic(work / "scores.pt", out)
        return {"n": len(out)}

    entry.get_or_build(build)
    return entry.load("scores.pt")
