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
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.adaptive_step import steps as S
from bench.adaptive_step.generation import label_scores
from bench.adaptive_step.policy import Policy
from bench.adaptive_step.stage import Log, bar, stage
from bench.core.cache import config_key, save_atomic, to_plain

Example = tuple[list[int], list[int], list[int]]  # (input ids, marker positions, label token per marker)


def prm_examples(pol: Policy, probs, rows, bounds, labels: Sequence[Sequence[int]], orm: bool) -> list[Example]:
    """PRM training examples: prompt + solution with markers, and the label token at each marker.

    Args:
        labels: per solution, one 0/1 label per marker (the closing one last).
        orm: outcome reward model: only the closing marker, labelled by the final answer.
    """
    ex = []
    for r, b, lab in zip(rows, bounds, labels):
        base = pol.prompt_ids(probs[r["q"]])
        if orm:
            sol, pos = S.insert_markers(r["ids"], [], pol.marker_id)
            y = [lab[-1]]
        else:
            sol, pos = S.insert_markers(r["ids"], b, pol.marker_id)
            y = list(lab)
        assert len(pos) == len(y), (len(pos), len(y))
        ex.append((base + sol, [len(base) + p for p in pos], [pol.good_id if v else pol.bad_id for v in y]))
    return ex


def train_prm(cfg: Any, pol: Policy, probs, rows, bounds, labels: Sequence[Sequence[int]], name: str,
              label_key: str, log: Log) -> tuple[Any, str]:
    """Stage 5 (cached as `prm_<name>`): a PRM from the policy weights, label-token cross-entropy at the markers.

    Own loop, not TRL's PRMTrainer: TRL is not installed here, and its PRM trainer trains a
    token-classification head, while the paper keeps the LM head and trains it to emit a label token
    after each step marker (ASPRM). The loop is the paper's objective in a few lines.

    Args:
        labels: per solution, the hard 0/1 label of each marker (MC labels `["hard"]`, or oracle labels).
        name: `confidence`, `newline`, `random`, `orm`, `oracle`, ... (the entry's name is `prm_<name>`).
        label_key: the cache key of the labels (part of this stage's key).

    Returns:
        (the PRM in eval mode, the stage key).
    """
    from transformers import AutoModelForCausalLM

    pcfg = to_plain(cfg.prm)
    entry = stage(cfg, f"prm_{name}", {"policy": pol.key, "labels": label_key, "prm": pcfg, "name": name})

    def build(work: Path) -> dict[str, Any]:
        ex = prm_examples(pol, probs, rows, bounds, labels, orm=(name == "orm"))
        model, info = _fit(cfg, pol, ex, pcfg, name, log)
        model.save_pretrained(work / "model")
        return info

    entry.get_or_build(build)
    return AutoModelForCausalLM.from_pretrained(entry.dir / "model").eval(), entry.key


def _fit(cfg: Any, pol: Policy, ex: list[Example], pcfg: dict[str, Any], name: str, log: Log) -> tuple[Any, dict[str, Any]]:
    """The training loop: AdamW, linear decay, `prm.epochs` passes over the examples in seeded order."""
    from transformers import AutoModelForCausalLM

    if (pol.folder / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(pol.folder)
    else:  # a pretrained policy loaded by the suite's loader: start from a copy
        model = copy.deepcopy(pol.model)
    model.resize_token_embeddings(len(pol.tokenizer))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=float(pcfg["lr"]), weight_decay=0.0)
    rng = random.Random(int(pcfg["seed"]))
    bs, epochs = int(pcfg["batch"]), int(pcfg["epochs"])
    n_steps = epochs * ((len(ex) + bs - 1) // bs)
    step, t0, losses = 0, time.time(), []
    pbar = tqdm(total=n_steps, desc=f"prm[{name}]", disable=not cfg.pipeline.progress, mininterval=2.0, leave=False)
    for _ in range(epochs):
        order = list(range(len(ex)))
        rng.shuffle(order)
        for s in range(0, len(order), bs):
            batch = [ex[i] for i in order[s:s + bs]]
            L = max(len(x[0]) for x in batch)
            ids = torch.full((len(batch), L), pol.eos_id, dtype=torch.long)  # (b, L)
            mask = torch.zeros((len(batch), L), dtype=torch.long)
            tgt = torch.full((len(batch), L), -100, dtype=torch.long)        # (b, L) label tokens at markers
            for i, (x, pos, y) in enumerate(batch):
                ids[i, :len(x)] = torch.tensor(x)
                mask[i, :len(x)] = 1
                tgt[i, pos] = torch.tensor(y)
            logits = model(input_ids=ids, attention_mask=mask).logits  # (b, L, V)
            if pcfg.get("loss", "vocab") == "vocab":  # paper: cross-entropy over the whole vocabulary
                loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1),
                                                         ignore_index=-100)
            else:  # `pair`: cross-entropy over the two label logits only (what the score uses)
                sel = tgt != -100                                                    # (b, L)
                pair = logits[sel][:, [pol.good_id, pol.bad_id]].float()            # (m, 2)
                loss = torch.nn.functional.cross_entropy(pair, (tgt[sel] == pol.bad_id).long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for g in opt.param_groups:  # linear decay
                g["lr"] = float(pcfg["lr"]) * (1 - step / max(1, n_steps))
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            pbar.update(1)
    pbar.close()
    model.eval()
    n_mark = sum(len(e[2]) for e in ex)
    pos_rate = float(np.mean([int(t == pol.good_id) for e in ex for t in e[2]]))
    log(f"prm[{name}]: {step} steps, loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}, "
        f"{n_mark} markers ({pos_rate:.2f} good), {time.time() - t0:.0f} s")
    return model, {"steps": step, "final_loss": float(np.mean(losses[-10:])), "examples": len(ex),
                   "markers": n_mark, "positive_rate": pos_rate, "seconds": time.time() - t0}


def score_candidates(cfg: Any, pol: Policy, prm, prm_key: str, probs, rows, bounds, orm: bool,
                     samples_key: str, log: Log) -> list[list[float]]:
    """Stage 6 (cached as `scores`): step scores P(good) of every test candidate under one PRM."""
    entry = stage(cfg, "scores", {"prm": prm_key, "samples": samples_key, "orm": orm, "bounds": config_key(bounds)})

    def build(work: Path) -> dict[str, Any]:
        seqs, poss = [], []
        for r, b in zip(rows, bounds):
            base = pol.prompt_ids(probs[r["q"]])
            sol, pos = S.insert_markers(r["ids"], [] if orm else b, pol.marker_id)
            seqs.append(base + sol)
            poss.append([len(base) + p for p in pos])
        out: list[list[float]] = []
        bs = int(cfg.scale.batch)
        for s in bar(range(0, len(seqs), bs), (len(seqs) + bs - 1) // bs, "scores", cfg.pipeline.progress):
            out += label_scores(prm, seqs[s:s + bs], poss[s:s + bs], pol.good_id, pol.bad_id, pol.eos_id, batch=bs)
        save_atomic(work / "scores.pt", out)
        return {"n": len(out)}

    entry.get_or_build(build)
    return entry.load("scores.pt")
