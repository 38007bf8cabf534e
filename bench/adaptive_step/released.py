"""Best-of-N with the paper's released PRMs on released candidate solutions (`paper` profile).

Paper §4.2 / Figs. 4-5, Tables 2, 3 and 6: every candidate solution of a question is scored by a PRM, the
step scores are aggregated (min by default; mean / last as well) and the best-scored candidate's final answer
is checked. Here the PRMs are the released checkpoints (ASPRM-M / -L / -D, Math-Shepherd) loaded by hub id or
from a local folder, and the candidates come from a JSONL file (`released.candidates`) in the format of the
paper's released Best-of-N evaluation data (`Lux0926/ASPRM`, `evaluation/math/BON/*.jsonl`; full sets on the
hub as `Lux0926/ASPRM-BON-Evaluation-Dataset-Math` / `-Code`). One row per question::

    {"idx": 1,
     "question": "A robe takes 2 bolts ...",                       # shown to the PRM (Math-Shepherd format)
     "input": "Below is an instruction ... ### Response: Let's think step by step.",   # the policy prompt
     "answer": "3",                                                # gold final answer (math tasks)
     "pred": [" If the robe takes ...\\n#### 3\\nThe answer is: 3 ", ...],                 # N candidates
     "math_confidence_list": [" ... fiber.\\nSo ки  in total ... 3  ки ", ...],  # same N, confidence markers
     "math_hard_list": [...],     # same N, a marker before every newline (rule-based steps)
     "math_random_list": [...]}   # same N, markers at random positions (Table 3 control)

The three `*_list` fields carry the same candidates as `pred` with the step marker text " ки " inserted
before each step-boundary token plus one closing marker (AdaptiveStep §3.1, Fig. 2): the released eval
chooses the list with `--eval_type confidence|hard|random`. Field names are settings (`released.fields`,
`released.arms.<arm>.steps`). For code tasks a row names its problem by `task_id` (e.g. `HumanEval/0`), which
is looked up in the data directory and checked through the sandbox (`pipeline.check_answers`).

How a PRM turns a candidate into step scores is a small spec per PRM (`released.spec.<prm>`, values and
their sources in `configs/adaptive_step/profile/paper.yaml`): the marker token it was trained with, its
good / bad label tokens, whether its input starts with BOS, and how question and solution are joined. The step
score at a marker is P(good) = softmax over the two label logits at that position (§3.3; Math-Shepherd's
model card computes the same); the solution score aggregates them with `steps.aggregate`.

Candidates without released markers (or PRMs trained on newline steps, Math-Shepherd) use `steps: newline`:
each non-empty line of the plain candidate gets the PRM's marker appended (Math-Shepherd format
"Step 1: ... ки\\nStep 2: ... ки").

Scores and candidate correctness are cached stages (`cache_dir()/adaptive_step/released_*-<hash>`, keyed by
the file's SHA-256, the PRM and its spec), so re-aggregating or adding N never rescores.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bench.adaptive_step import pipeline as P
from bench.adaptive_step import steps as S
from bench.adaptive_step import tasks as T
from bench.core.errors import ConfigError

# ------------------------------------------------------------------------------------------ PRM specs
@dataclass(frozen=True)
class PrmSpec:
    """How one released PRM reads a solution (`released.spec.<name>`).

    Attributes:
        marker: the step-marker string the PRM was trained with (encodes to one token, possibly after
            whitespace-only prefix tokens that SentencePiece / byte-level BPE put in front).
        good: label token for a correct step ("+").
        bad: label token for a wrong step ("-").
        bos: whether the PRM's input starts with the tokenizer's special tokens (BOS).
        prompt_format: how the PRM input is built, with `{prompt}` (policy prompt of the row), `{question}`
            and `{solution}` (candidate with markers).
        insert: text appended to each step in `steps: newline` mode (Math-Shepherd: " ки").
        step_prefix: prefix of step k in `newline` mode, with `{k}` (Math-Shepherd's format: "Step {k}: ").
    """

    marker: str
    good: str = "+"
    bad: str = "-"
    bos: bool = True
    prompt_format: str = "{question} {solution}"
    insert: str = " ки"
    step_prefix: str = ""


@dataclass(frozen=True)
class LabelIds:
    """Token ids of one PRM: step marker, good / bad label, padding."""

    marker: int
    good: int
    bad: int
    pad: int


def prm_spec(cfg: Any, name: str) -> PrmSpec:
    """The spec of PRM `name` from `released.spec` (ConfigError naming the setting when absent)."""
    from omegaconf import OmegaConf

    specs = cfg.released.get("spec") or {}
    if name not in specs:
        raise ConfigError(f"released.spec.{name}", f"no spec (marker, label tokens) for released PRM {name!r}")
    raw = OmegaConf.to_container(specs[name], resolve=True) if not isinstance(specs[name], dict) else specs[name]
    try:
        return PrmSpec(**raw)  # type: ignore[arg-type]
    except TypeError as e:
        raise ConfigError(f"released.spec.{name}", f"bad spec for {name!r}: {e}") from e


def token_id(tok: Any, text: str, setting: str) -> int:
    """The single vocabulary id of `text` under `tok`, the way the released code resolves it.

    OpenRLHF (the ASPRM trainer) encodes the placeholder / label strings without special tokens and requires
    one token; Math-Shepherd's model card takes the last id of `encode(step_tag)`. Both agree with: encode
    without special tokens, drop leading ids that decode to whitespace only (SentencePiece's bare "▁",
    byte-level BPE's "Ġ"), and require exactly one id to remain.
    """
    ids = tok.encode(text, add_special_tokens=False)
    while len(ids) > 1 and not tok.decode([ids[0]]).strip():
        ids = ids[1:]
    if len(ids) != 1:
        raise ConfigError(setting, f"{text!r} is not one token for this PRM's tokenizer "
                                   f"(ids {tok.encode(text, add_special_tokens=False)})")
    return int(ids[0])


def label_ids(tok: Any, spec: PrmSpec, name: str) -> LabelIds:
    """Marker / label / pad ids of PRM `name` (pad: the tokenizer's pad, else EOS, else 0)."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = LabelIds(token_id(tok, spec.marker, f"released.spec.{name}.marker"),
                   token_id(tok, spec.good, f"released.spec.{name}.good"),
                   token_id(tok, spec.bad, f"released.spec.{name}.bad"), int(pad if pad is not None else 0))
    if ids.good == ids.bad:
        raise ConfigError(f"released.spec.{name}", "good and bad label tokens are the same token")
    return ids


# ---------------------------------------------------------------------------------------- loading
def prm_source(cfg: Any, name: str) -> str:
    """Hub id or local folder of PRM `name` (`released.prms.<name>`)."""
    prms = cfg.released.get("prms") or {}
    if name not in prms or not prms[name]:
        raise ConfigError(f"released.prms.{name}", f"released PRM {name!r} has no hub id or folder")
    return str(prms[name])


def prm_fingerprint(cfg: Any, name: str) -> str:
    """What identifies the PRM's weights in cache keys: the hub id, or a local folder with its files' sizes
    and modification times (a retrained folder at the same path gets new keys)."""
    src = prm_source(cfg, name)
    folder = Path(src).expanduser()
    if not folder.exists():
        return f"hub:{src}"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return "local:" + str(folder.resolve()) + ":" + ",".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                                           for p in files)


def load_prm(cfg: Any, name: str) -> tuple[Any, Any]:
    """Load released PRM `name` through the suite's loader (`bench.core.models.load_model`).

    A local folder loads offline; a hub id goes through the hub (offline with `HF_HUB_OFFLINE=1`). Any
    failure is one ConfigError naming `released.prms.<name>`.

    Returns:
        (model in eval mode on `cfg.device`, tokenizer).
    """
    from omegaconf import OmegaConf

    from bench.core.models import load_model

    src = prm_source(cfg, name)
    local = Path(src).expanduser().exists()
    mcfg = OmegaConf.create({"name": f"released_{name}", "source": "local" if local else "hub",
                             "path": str(Path(src).expanduser()) if local else None,
                             "hub_id": None if local else src, "family": None, "context": None})
    try:
        lm = load_model(mcfg, dtype=str(cfg.dtype), device=str(cfg.device))
    except ConfigError as e:
        if e.setting in ("dtype", "device"):
            raise
        raise ConfigError(f"released.prms.{name}", f"released PRM {name!r} ({src}) could not be loaded: "
                                                   f"{str(e).split(' (setting to fix')[0]}") from e
    return lm.model.eval(), lm.tokenizer


# ------------------------------------------------------------------------------------- candidates
@dataclass
class Row:
    """One question of the candidates file (the first `pool` candidates kept)."""

    problem: T.Problem
    prompt: str
    solutions: list[str]
    fields: dict[str, list[str]]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_candidates(cfg: Any) -> tuple[list[Row], str]:
    """Rows of `released.candidates` (first `scale.test_questions` questions, first `released.pool`
    candidates each) and the file's SHA-256."""
    import json

    rel = cfg.released
    if not rel.get("candidates"):
        raise ConfigError("released.candidates", "the `paper` Best-of-N needs a candidates JSONL (the paper's "
                                                 "released BoN evaluation data, e.g. from the hub dataset "
                                                 "Lux0926/ASPRM-BON-Evaluation-Dataset-Math; format in "
                                                 "bench/adaptive_step/released.py)")
    path = Path(str(rel.candidates)).expanduser()
    if not path.is_file():
        raise ConfigError("released.candidates", f"candidates file {path} not found")
    f = {"question": "question", "prompt": "input", "answer": "answer", "solutions": "pred", "task_id": "task_id",
         **dict(rel.get("fields") or {})}
    n_q, pool = int(cfg.scale.test_questions), rel.get("pool")
    task = str(cfg.task.name)
    code = task in P.CODE_TASKS
    loader = {"humaneval": T.load_humaneval, "mbpp": T.load_mbpp}.get(task)
    by_id = {p.uid: p for p in loader(cfg.data_dir)} if loader else {}  # code rows name any problem by task id
    rows: list[Row] = []
    with open(path, encoding="utf-8") as fh:
        for k, line in enumerate(fh):
            if len(rows) >= n_q:
                break
            if not line.strip():
                continue
            r = json.loads(line)
            sols = r.get(f["solutions"])
            if not isinstance(sols, list) or not sols:
                raise ConfigError("released.fields.solutions", f"{path.name} row {k}: no list {f['solutions']!r}")
            keep = len(sols) if pool is None else min(len(sols), int(pool))
            if code:
                tid = str(r.get(f["task_id"]))
                if tid not in by_id:
                    raise ConfigError("released.fields.task_id", f"{path.name} row {k}: task {tid!r} is not a "
                                                                 f"{task} problem of the data directory")
                prob = by_id[tid]
            else:
                if f["answer"] not in r:
                    raise ConfigError("released.fields.answer", f"{path.name} row {k}: no gold answer "
                                                                f"{f['answer']!r}")
                q = str(r.get(f["question"], ""))
                prob = T.Problem(f"released/{r.get('idx', k)}", q, str(r[f["answer"]]))
            lists = {key: list(v[:keep]) for key, v in r.items() if isinstance(v, list) and key != f["solutions"]}
            rows.append(Row(prob, str(r.get(f["prompt"]) or prob.question), [str(s) for s in sols[:keep]], lists))
    if not rows:
        raise ConfigError("released.candidates", f"{path} has no rows")
    return rows, _sha256(path)


def strip_markers(text: str, marker_text: str) -> str:
    """A released marked candidate without its step markers (should give back the `pred` text)."""
    return text.replace(marker_text, "")


def newline_steps(solution: str, spec: PrmSpec) -> str:
    """Rule-based steps for newline-style PRMs: `spec.insert` after every non-empty line (Math-Shepherd)."""
    out, k = [], 0
    for line in solution.strip().split("\n"):
        if not line.strip():
            continue
        k += 1
        out.append(spec.step_prefix.format(k=k) + line.strip() + spec.insert)
    return "\n".join(out) if out else solution.strip() + spec.insert


def arm_solutions(cfg: Any, arm: str, steps: str, spec: PrmSpec, rows: Sequence[Row]) -> tuple[list[str], int]:
    """Marked candidate texts of one arm, flattened in row order, and how many differ from `pred`.

    Args:
        steps: `newline` (mark each line of the plain candidate) or a candidates-file field whose lists
            already carry the markers (`math_confidence_list`, `math_hard_list`, `math_random_list`).

    Returns:
        (texts, misaligned): a marked text whose markers removed do not give its `pred` text back (compared
        with whitespace collapsed) is counted; it is still scored, and correctness is always that of `pred`.
    """
    marker_text = str(cfg.released.get("marker_text") or " ки ")
    texts: list[str] = []
    bad = 0
    for r in rows:
        if steps == "newline":
            texts += [newline_steps(s, spec) for s in r.solutions]
            continue
        if steps not in r.fields:
            raise ConfigError(f"released.arms.{arm}.steps", f"field {steps!r} is not in the candidates file "
                                                            f"(lists there: {sorted(r.fields)})")
        marked = r.fields[steps]
        if len(marked) != len(r.solutions):
            raise ConfigError(f"released.arms.{arm}.steps", f"{steps!r} has {len(marked)} candidates for "
                                                            f"{r.problem.uid}, the solutions field {len(r.solutions)}")
        for m, s in zip(marked, r.solutions):
            bad += " ".join(strip_markers(m, marker_text).split()) != " ".join(s.split())
        texts += [str(m) for m in marked]
    return texts, bad


# ---------------------------------------------------------------------------------------- scoring
@torch.no_grad()
def marker_scores(model: Any, seqs: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], ids: LabelIds,
                  batch: int = 8) -> list[list[float]]:
    """P(good) at every marker: softmax over the good / bad label logits there (paper §3.3).

    Like `generation.label_scores`, on the model's device, batched by length, and with the LM head applied
    only at marker positions (`logits_to_keep`; a 7B PRM's full (b, L, V) logits would not fit).

    Args:
        model: the PRM (a causal LM).
        seqs: token ids per candidate (PRM input with markers).
        positions: marker positions in each sequence (may be empty).
        ids: the PRM's marker / label / pad ids.
        batch: sequences per forward.
    """
    dev = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    out: list[list[float]] = [[] for _ in seqs]
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        L = max(len(seqs[i]) for i in idx)
        x = torch.full((len(idx), L), ids.pad, dtype=torch.long)       # (b, L), right padding
        mask = torch.zeros((len(idx), L), dtype=torch.long)            # (b, L)
        for r, i in enumerate(idx):
            x[r, :len(seqs[i])] = torch.tensor(list(seqs[i]), dtype=torch.long)
            mask[r, :len(seqs[i])] = 1
        keep = sorted({p for i in idx for p in positions[i]})
        if not keep:
            continue
        where = {p: j for j, p in enumerate(keep)}
        kept = torch.tensor(keep, dtype=torch.long, device=dev)        # (K,) union of marker positions
        try:
            logits = model(input_ids=x.to(dev), attention_mask=mask.to(dev), logits_to_keep=kept).logits  # (b, K, V)
        except TypeError:  # a model class without `logits_to_keep`: full logits, then the same positions
            logits = model(input_ids=x.to(dev), attention_mask=mask.to(dev)).logits[:, kept]              # (b, K, V)
        for r, i in enumerate(idx):
            if positions[i]:
                cols = [where[p] for p in positions[i]]
                pair = logits[r, cols][:, [ids.good, ids.bad]].float()  # (m, 2)
                out[i] = torch.softmax(pair, -1)[:, 0].tolist()
    return out


def encode_for_prm(tok: Any, spec: PrmSpec, ids: LabelIds, prompts: Sequence[str], questions: Sequence[str],
                   texts: Sequence[str], max_len: int | None = None) -> tuple[list[list[int]], list[list[int]], int]:
    """PRM inputs and marker positions; also how many candidates have a marker count that does not match
    the marker string's occurrences in the text (tokenisation merged or split a marker).

    Inputs longer than `max_len` keep their last `max_len` tokens (the closing marker survives).
    """
    seqs, poss, mismatched = [], [], 0
    needle = spec.marker.strip()
    for pr, q, t in zip(prompts, questions, texts):
        text = spec.prompt_format.format(prompt=pr, question=q, solution=t)
        x = tok(text, add_special_tokens=spec.bos).input_ids
        if max_len and len(x) > max_len:
            x = x[-max_len:]
        pos = [k for k, v in enumerate(x) if v == ids.marker]
        mismatched += len(pos) != t.count(needle)
        seqs.append(x)
        poss.append(pos)
    return seqs, poss, mismatched


def _stage_key(cfg: Any, sha: str) -> dict[str, Any]:
    return {"sha": sha, "n_q": int(cfg.scale.test_questions), "pool": cfg.released.get("pool"),
            "fields": P._plain(cfg.released.get("fields") or {}), "task": str(cfg.task.name)}


def candidate_truth(cfg: Any, rows: Sequence[Row], sha: str) -> tuple[list[bool], list[str | None]]:
    """Correctness and majority-vote answer key of every candidate (cached stage `released_candidates`).

    GSM8K: numeric comparison of the `####` / last number (`tasks.check_gsm8k`); MATH500: math-verify on the
    last box or the MetaMath "The answer is: ..." (`tasks.check_math_any`); code: in the bubblewrap sandbox.
    """
    stage = P.Stage("released_candidates", {**_stage_key(cfg, sha), "code_timeout": cfg.task.get("code_timeout")},
                    cfg.pipeline.rerun)
    if stage.done:
        out = stage.load("truth.pt")
        return out["correct"], out["answers"]
    task = str(cfg.task.name)
    texts = [s for r in rows for s in r.solutions]
    probs = [r.problem for r in rows for _ in r.solutions]
    if task in P.CODE_TASKS:
        correct: list[bool] = []
        for s in range(0, len(texts), 256):  # one bubblewrap sandbox per chunk
            correct += P.check_answers(cfg, texts[s:s + 256], probs[s:s + 256])
        answers = [P.answer_key(cfg, t, p) for t, p in zip(texts, probs)]
    elif task == "math500":
        correct = [T.check_math_any(t, p.answer) for t, p in zip(texts, probs)]
        answers = [T.extract_math_answer(t) for t in texts]
    elif task in ("gsm8k", "synthetic"):
        correct = [T.check_gsm8k(t, p.answer) for t, p in zip(texts, probs)]
        answers = [T.numeric_key(T.extract_gsm8k_answer(t)) for t in texts]
    else:
        raise ConfigError("task.name", f"released candidates for task {task!r} cannot be checked")
    stage.save("truth.pt", {"correct": correct, "answers": answers})
    stage.finish({"n": len(texts), "acc": float(np.mean(correct))})
    return correct, answers


def score_arm(cfg: Any, arm: str, rows: Sequence[Row], sha: str, loaded: dict[str, Any], log: P.Log
              ) -> tuple[list[list[float]], dict[str, int]]:
    """Step scores of every candidate under one arm (cached stage `released_scores`, resumable).

    Args:
        arm: name in `released.arms` (`{prm: <released.prms key>, steps: newline | <field>}`).
        loaded: PRMs loaded so far in this run (name -> (model, tokenizer)), reused across arms.

    Returns:
        (step scores per candidate, stats: misaligned / marker_mismatch / unscored / markers).
    """
    from bench.core.checkpoint import Checkpoint

    a = cfg.released.arms[arm]
    name, steps = str(a.prm), str(a.steps)
    spec = prm_spec(cfg, name)
    texts, misaligned = arm_solutions(cfg, arm, steps, spec, rows)
    stage = P.Stage("released_scores", {**_stage_key(cfg, sha), "prm": prm_fingerprint(cfg, name),
                                        "spec": dataclasses.asdict(spec), "steps": steps, "dtype": str(cfg.dtype),
                                        "max_len": cfg.released.get("max_len")}, cfg.pipeline.rerun)
    if stage.done:
        return stage.load("scores.pt"), stage.info()["stats"]
    if name not in loaded:
        log(f"released: loading PRM {name} ({prm_source(cfg, name)})")
        loaded.clear()  # one PRM in memory at a time
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        loaded[name] = load_prm(cfg, name)
    model, tok = loaded[name]
    ids = label_ids(tok, spec, name)
    prompts = [r.prompt for r in rows for _ in r.solutions]
    questions = [r.problem.question for r in rows for _ in r.solutions]
    ck = Checkpoint(stage.dir, "partial", stage.key)
    state = ck.load() or {"scores": [], "mismatch": 0}
    bs = int(cfg.released.get("batch") or 8)
    chunk = bs * 32
    starts = list(range(len(state["scores"]), len(texts), chunk))
    for s in P._bar(starts, len(starts), f"released[{arm}]", cfg.pipeline.progress):
        sl = slice(s, min(len(texts), s + chunk))
        seqs, poss, mm = encode_for_prm(tok, spec, ids, prompts[sl], questions[sl], texts[sl],
                                        cfg.released.get("max_len"))
        state["scores"] += marker_scores(model, seqs, poss, ids, bs)
        state["mismatch"] += mm
        ck.save(state)
    scores = state["scores"]
    stats = {"misaligned": misaligned, "marker_mismatch": state["mismatch"],
             "unscored": sum(not s for s in scores), "markers": sum(len(s) for s in scores)}
    stage.save("scores.pt", scores)
    stage.finish({"stats": stats, "n": len(scores)})
    ck.clear()
    log(f"released[{arm}]: {len(scores)} candidates scored by {name}, {stats['markers'] / max(1, len(scores)):.2f} "
        f"markers each; {stats['unscored']} without a marker, {misaligned} misaligned with `pred`")
    return scores, stats


# ----------------------------------------------------------------------------------------- BoN run
def run_bon(ctx: Any) -> None:
    """The `bon` experiment on the `paper` profile: Best-of-N over released candidates with released PRMs.

    Same selection as the suite's `bon` (`pipeline.best_of_n` with the same N list and seeds, majority vote
    `pipeline.majority_pick`, random pick = first drawn, pass@N oracle) and the same metric names
    `bon_acc.<arm>.<N>` (min aggregation, the paper's default) and `bon_acc.<arm>_<mean|last>.<N>`; arms are
    named as in `released.arms` (asprm_m, asprm_l, math_shepherd, ...).
    """
    from bench.adaptive_step import figures
    from bench.core.plots import run_view

    cfg = ctx.cfg
    rows, sha = load_candidates(cfg)
    arms = list((cfg.released.get("arms") or {}).keys())
    if not arms:
        raise ConfigError("released.arms", "no Best-of-N arms (released PRM + step source) configured")
    ctx.log(f"released: {len(rows)} questions, {sum(len(r.solutions) for r in rows)} candidates "
            f"from {Path(str(cfg.released.candidates)).name} (sha256 {sha[:12]})")
    correct, answers = candidate_truth(cfg, rows, sha)
    groups: dict[int, list[int]] = {}
    i = 0
    for q, r in enumerate(rows):
        groups[q] = list(range(i, i + len(r.solutions)))
        i += len(r.solutions)
    loaded: dict[str, Any] = {}
    pickers: dict[str, Any] = {}
    prm_order = list(dict.fromkeys(str(cfg.released.arms[a].prm) for a in arms))
    for arm in sorted(arms, key=lambda a: prm_order.index(str(cfg.released.arms[a].prm))):  # each PRM loads once
        sc, st = score_arm(cfg, arm, rows, sha, loaded, ctx.log)
        for agg in cfg.method.aggregations:
            vals = [S.aggregate(s, str(agg)) if s else 0.0 for s in sc]  # no marker: lowest score, counted
            pickers[arm if agg == "min" else f"{arm}_{agg}"] = P.score_pick(vals)
        n = max(1, len(sc))
        ctx.metric(f"released.steps_per_solution.{arm}", st["markers"] / n, "markers", "none",
                   note=f"PRM {cfg.released.arms[arm].prm}, steps from {cfg.released.arms[arm].steps}")
        for what in ("misaligned", "marker_mismatch", "unscored"):
            ctx.metric(f"released.{what}.{arm}", st[what], "candidates", "lower",
                       note={"misaligned": "marked text without markers != pred (whitespace collapsed)",
                             "marker_mismatch": "marker tokens found != marker strings in the text",
                             "unscored": "no marker token in the PRM input (scored 0)"}[what])
    loaded.clear()
    ctx.metric("released.candidate_acc", 100 * float(np.mean(correct)), "%", "none",
               note="accuracy of one candidate (all candidates of the pool)")
    from bench.adaptive_step.experiments import bon_sweep  # one Best-of-N loop for both paths

    results, ns, seeds, table = bon_sweep(ctx, pickers, groups, correct, answers, " (released PRMs)")
    pool = min(len(v) for v in groups.values())
    ctx.table("bon", f"Best-of-N accuracy (%) with the released PRMs on {cfg.task.name}, mean ± sd over "
                     f"{len(seeds)} seeds", table, notes=[
        f"candidates {Path(str(cfg.released.candidates)).name} (sha256 {sha[:12]}): {len(groups)} questions, "
        f"pool of {pool} candidates each; N drawn without replacement per seed",
        "PRM arms: " + "; ".join(f"{a} = {cfg.released.arms[a].prm} ({prm_source(cfg, str(cfg.released.arms[a].prm))}) "
                                 f"on {cfg.released.arms[a].steps} steps" for a in arms),
        "PRM arms aggregate step scores with min (paper default); `_mean` / `_last` are the other aggregations"])
    ctx.csv("bon_long", figures.bon_rows(results, seeds), columns=figures.BON_COLUMNS)
    ctx.figures(figures.rebuild(ctx.out_dir, run_view(ctx)))
    # provenance: which candidates file and which PRM weights (hub id or local folder) the record used
    fps = {a: prm_fingerprint(cfg, str(cfg.released.arms[a].prm)) for a in arms}
    ctx.record.extra["released"] = {"candidates_sha256": sha, "prms": fps}
