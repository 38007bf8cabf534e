"""Stage 1, the policy (paper §4.1 "Models"): a tiny Llama trained by the suite, or a pretrained model.

`model.source: suite_trained` trains a tiny Llama on the synthetic task (supervised fine-tuning, loss on
the solution tokens); any other source loads a pretrained model through the suite's loader (SmolLM2 on CPU,
the paper's models on GPU). Either way the stage records the policy's greedy accuracy on the test questions.
The step marker and the two label tokens (`<|step|>`, `<|good|>`, `<|bad|>`) live in the policy's vocabulary,
because each PRM starts from the policy's weights and emits a label token after each marker (§3.3).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from llm_efficiency_bench.adaptive_step import stage_settings
from llm_efficiency_bench.adaptive_step.generation import sample
from llm_efficiency_bench.adaptive_step.stage import Log, RunOptions, bar
from llm_efficiency_bench.adaptive_step.stage_inputs import PolicyInputs
from llm_efficiency_bench.adaptive_step.tasks import Problem, Task
from llm_efficiency_bench.core.checkpoint import restore_training, save_training

MARKER, GOOD, BAD = "<|step|>", "<|good|>", "<|bad|>"


@dataclass
class Policy:
    """The policy model and the ids the pipeline needs (markers and label tokens live in its vocabulary)."""

    model: Any
    tokenizer: Any
    key: str
    eos_id: int
    marker_id: int
    good_id: int
    bad_id: int
    folder: Path
    greedy_acc: float
    prompt_style: str
    task: Task

    def prompt_ids(self, problem: Problem) -> list[int]:
        return self.tokenizer(self.task.prompt(problem, self.prompt_style)).input_ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([int(i)]) for i in ids]


def _policy_text(p: Problem) -> str:
    return p.question + "\n" + p.solution


def build_policy(inputs: PolicyInputs, run: RunOptions, log: Log) -> Policy:
    """Stage 1 (cached as `policy`): train or load the policy, then measure its greedy accuracy."""
    task, mcfg, n_eval = inputs.task, inputs.model, inputs.n_eval
    entry = inputs.entry(run)
    if mcfg.get("source") != "suite_trained":
        return _pretrained_policy(inputs, entry, run, log)
    style = mcfg.get("prompt_style", "plain")

    def build(work: Path) -> dict[str, Any]:
        folder = work / "model"
        if not (folder / "config.json").exists():  # trained weights survive a kill during the greedy evaluation
            _train_tiny(task, mcfg, work, run.progress, log, entry.key)
        pol = _load_tiny(folder, entry.key, style, task)
        acc = greedy_accuracy(pol, task.load("test", n_eval), inputs.max_new, inputs.batch, run.progress, log)
        return {"greedy_acc": acc, "n_eval": n_eval}

    entry.get_or_build(build)
    pol = _load_tiny(entry.dir / "model", entry.key, style, task)
    pol.greedy_acc = entry.info()["greedy_acc"]
    log(f"policy: greedy accuracy {pol.greedy_acc:.3f} on {n_eval} test questions ({entry.dir.name})")
    return pol


def train_policy(cfg: Any, log: Log) -> Policy:
    """The policy stage of a run's config (its inputs built by `stage_settings`), for callers that hold one."""
    return build_policy(stage_settings.policy_inputs(cfg), stage_settings.run_options(cfg), log)


def policy_key_obj(cfg: Any) -> dict[str, Any]:
    """The policy stage's key object for a run's config: the model config, the task, the greedy-evaluation
    settings (`PolicyInputs.key_obj`)."""
    return stage_settings.policy_inputs(cfg).key_obj()


def _train_tiny(task: Task, mcfg: dict[str, Any], work: Path, progress: bool, log: Log, key: str) -> None:
    """Train the tiny Llama and its BPE tokenizer on the task's training questions into `work/model`.

    Training checkpoints into the stage's partial folder (`work/policy_train.pt`, keyed by the stage key) every
    twentieth of the run, so an interrupted policy stage resumes at its last checkpoint with the same losses.
    """
    from llm_efficiency_bench.core.checkpoint import Checkpoint

    from transformers import LlamaForCausalLM

    from llm_efficiency_bench.core.tiny import llama_config, train_bpe_tokenizer, train_causal_lm

    tr = mcfg["train"]
    probs = task.load("policy_train", int(tr["questions"]))
    eos = "<|endoftext|>"
    text = eos + eos.join(_policy_text(p) for p in probs) + eos
    torch.manual_seed(int(tr["seed"]))
    tok = train_bpe_tokenizer(text, int(mcfg["arch"]["vocab"]), extra_special=[MARKER, GOOD, BAD])
    model = LlamaForCausalLM(llama_config(mcfg["arch"], len(tok), int(mcfg["context"])))
    t0 = time.time()
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    if tr.get("objective", "sft") == "lm":  # plain LM on the concatenated stream (llm_efficiency_bench.core.tiny)
        ids = torch.tensor(tok(text).input_ids, dtype=torch.long)
        log(f"policy: LM-training a {n_params:.2f}M-param Llama on {ids.numel():,} tokens")
        losses = train_causal_lm(model, ids, tr, log=log, checkpoint=Checkpoint(work, "policy_train", key),
                                 every_steps=max(1, int(tr["steps"]) // 20))
    else:
        pairs = [(tok(task.prompt(p, "plain")).input_ids, tok(p.solution).input_ids + [tok.eos_token_id])
                 for p in probs]
        log(f"policy: SFT of a {n_params:.2f}M-param Llama on {len(pairs)} synthetic solutions (loss on "
            "solution tokens)")
        losses = train_sft(model, pairs, tr, tok.eos_token_id, log, progress,
                           checkpoint=Checkpoint(work, "policy_train", key), every_steps=max(1, int(tr["steps"]) // 20))
    tmp = work / "model.tmp"  # complete weights or none: a kill mid-save must not look like a trained model
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, work / "model")
    (work / "training.json").write_text(json.dumps({"final_loss": losses[-1], "seconds": time.time() - t0}))


def _load_tiny(folder: Path, key: str, style: str, task: Task) -> Policy:
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    return _make_policy(model, tok, key, folder, style, task)


def train_sft(model, pairs: Sequence[tuple[list[int], list[int]]], tr: dict[str, Any], pad_id: int, log: Log,
              progress: bool = True, checkpoint: Any = None, every_steps: int = 0) -> list[float]:
    """Supervised fine-tuning: next-token loss on the solution tokens only (the prompt is context).

    Same optimiser and schedule as `llm_efficiency_bench.core.tiny.train_causal_lm` (AdamW, warmup + cosine); the only
    difference is the loss mask, which keeps the random numbers of the *questions* out of the objective
    and so teaches the tiny model to copy and compute in a few hundred steps.

    Args:
        checkpoint: optional `llm_efficiency_bench.core.checkpoint.Checkpoint`: model, optimizer, sampler and torch RNG
            state and the losses are saved every `every_steps` steps, and a matching checkpoint resumes there
            with bit-identical losses (cleared when training ends).
    """
    steps, bsz, lr = int(tr["steps"]), int(tr["batch"]), float(tr["lr"])
    warmup = int(tr.get("warmup", max(1, steps // 20)))
    gen = torch.Generator().manual_seed(int(tr["seed"]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(tr.get("weight_decay", 0.1)),
                            betas=(0.9, 0.95))
    model.train()
    losses: list[float] = restore_training(checkpoint, model, opt, gen)  # [] unless resuming
    if losses:
        log(f"policy: resumed from {checkpoint.path} at step {len(losses)}/{steps}")
    t0 = time.time()
    for step in bar(range(len(losses), steps), steps - len(losses), "policy", progress):
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * max(scale, 0.05)
        pick = torch.randint(0, len(pairs), (bsz,), generator=gen).tolist()
        seqs = [pairs[i][0] + pairs[i][1] for i in pick]
        L = max(len(x) for x in seqs)
        ids = torch.full((bsz, L), pad_id, dtype=torch.long)      # (B, L), right padding
        lab = torch.full((bsz, L), -100, dtype=torch.long)        # (B, L), solution tokens only
        for r, i in enumerate(pick):
            p, a = pairs[i]
            ids[r, :len(p) + len(a)] = torch.tensor(p + a)
            lab[r, len(p):len(p) + len(a)] = torch.tensor(a)
        logits = model(input_ids=ids).logits[:, :-1]              # (B, L-1, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), lab[:, 1:].reshape(-1),
                                                 ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            log(f"policy: step {step + 1}/{steps} loss {losses[-1]:.3f} ({time.time() - t0:.0f}s)")
        save_training(checkpoint, every_steps, step, steps, model, opt, gen, losses)
    if checkpoint is not None:
        checkpoint.clear()
    model.eval()
    return losses


def _make_policy(model, tok, key: str, folder: Path, style: str, task: Task) -> Policy:
    if MARKER not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [MARKER, GOOD, BAD]})
        model.resize_token_embeddings(len(tok))
    return Policy(model, tok, key, tok.eos_token_id, tok.convert_tokens_to_ids(MARKER),
                  tok.convert_tokens_to_ids(GOOD), tok.convert_tokens_to_ids(BAD), folder, 0.0, style, task)


def _pretrained_policy(inputs: PolicyInputs, entry: Any, run: RunOptions, log: Log) -> Policy:
    """A pretrained policy (SmolLM2 on CPU, the paper's models on GPU) through the suite's loader.

    Its entry holds only the greedy accuracy; `folder` has no weights, so a PRM starts from a copy of the
    loaded model (`prm.train_prm`).
    """
    from omegaconf import OmegaConf

    from llm_efficiency_bench.core.models import load_model

    lm = load_model(OmegaConf.create(inputs.model), dtype=inputs.dtype, device=inputs.device, data_dir=inputs.data_dir)
    pol = _make_policy(lm.model.eval(), lm.tokenizer, entry.key, entry.dir, inputs.model.get("prompt_style", "qa"),
                       inputs.task)
    entry.get_or_build(lambda work: {"greedy_acc": greedy_accuracy(
        pol, inputs.task.load("test", inputs.n_eval), inputs.max_new, inputs.batch, run.progress, log)})
    pol.greedy_acc = entry.info()["greedy_acc"]
    return pol


def greedy_accuracy(pol: Policy, probs: Sequence[Problem], max_new: int, batch: int, progress: bool, log: Log) -> float:
    """Fraction of `probs` the policy solves with greedy decoding (`batch` questions at a time)."""
    ok = 0
    for s in bar(range(0, len(probs), batch), (len(probs) + batch - 1) // batch, "greedy", progress):
        chunk = probs[s:s + batch]
        outs = sample(pol.model, [pol.prompt_ids(p) for p in chunk], max_new, pol.eos_id, greedy=True)
        ok += sum(pol.task.check_batch([pol.decode(o.ids) for o in outs], chunk))  # code: one sandbox per batch
    return ok / max(1, len(probs))
