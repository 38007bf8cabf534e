"""Streaming question answering on ARC (StreamingLLM Sec. 4.4, Table 5).

Every question of a split is fed to one chat stream, in the model's chat template, and the model's answer
stays in the stream: nothing is reset or re-encoded. Four policies on the same questions:

* `one_shot`: each question from an empty cache (the paper's sample-by-sample baseline);
* `dense`: one stream, nothing evicted, until `dense_max_tokens` (past the model's trained context on
  purpose: the paper's dense attention runs out of memory there; here the record says where it stopped
  and how it answered past the context);
* `window`: the last L tokens only (0 + L);
* `streaming`: StreamingLLM, 4 sinks + the last L - 4 tokens.

Scoring is lm-eval's ARC protocol inside the stream: the user turn is lm-eval's prompt ("Question: <stem>\n
Answer:", no choices shown), and the log-likelihood of each choice's text as the reply, given the stream so
far, picks the answer (`acc`: highest sum; `acc_norm`: highest sum per character); the `acc_norm` choice is
then appended to the stream as the model's answer. Generative metric, on every `generate_every`-th question:
on a branch of the stream (undone afterwards) the same question is asked with its lettered choices and the
greedy reply is scored by exact match of the letter (or the whole choice text). Showing the choices in the
stream's own turn instead took SmolLM2-135M to chance under log-likelihood scoring (one-shot, first 100
ARC-Easy questions: acc_norm 24% with them, 44% with lm-eval's plain prompt). Each policy is compared with one-shot
on the same questions by a paired bootstrap interval of the accuracy difference.

Cost: one forward reads a question (with the previous answer), one batched forward scores all choices
(`StreamingSession.score_many`); generation costs one forward per token, hence the subset.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from llm_efficiency_bench.core.checkpoint import Checkpoint, config_key
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.references import paper_table
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import Choice, ListOf, Rule, nonneg_int, pos_int
from llm_efficiency_bench.streaming_llm.arc import PARTS, SPLITS, Question, load_arc
from llm_efficiency_bench.streaming_llm.chat import render, stop_ids
from llm_efficiency_bench.streaming_llm.engine import StreamState
from llm_efficiency_bench.streaming_llm.generate import Snapshot, StreamingSession
from llm_efficiency_bench.streaming_llm.settings import CACHE, SINKS_FIT_CACHE
from llm_efficiency_bench.streaming_llm.stream_figures import draw_stream_qa

POLICIES = ("one_shot", "dense", "window", "streaming")
INSTRUCTION = "Answer with the correct choice."
PROMPT_VERSION = 2  # in the resume key: 2 = lm-eval's cloze turn in the stream, lettered choices on a branch


def user_text(q: Question) -> str:
    """The stream's user turn: lm-eval's ARC prompt (arc_easy / arc_challenge `doc_to_text`)."""
    return f"Question: {q.stem}\nAnswer:"


def choices_text(q: Question) -> str:
    """The user turn for a generated reply: the question, its lettered choices, and what to answer."""
    lines = [q.stem] + [f"{lab}. {text}" for lab, text in zip(q.labels, q.choices)]
    return "\n".join(lines) + "\n" + INSTRUCTION


def parse_reply(reply: str, q: Question) -> int | None:
    """The choice a generated reply names: a leading label ("B", "B.", "(B)", "B)"), else a choice text it
    starts with (case-insensitive); None when it names none (counted wrong)."""
    r = reply.strip()
    m = re.match(r"^\(?([A-Za-z0-9])(?:[\).:]|\s|$)", r)
    if m and m.group(1).upper() in [lab.upper() for lab in q.labels]:
        return [lab.upper() for lab in q.labels].index(m.group(1).upper())
    low = r.lower()
    for k, text in sorted(enumerate(q.choices), key=lambda kt: -len(kt[1])):  # longest first
        if text and low.startswith(text.lower()):
            return k
    return None


@dataclass
class Answer:
    """One question under one policy."""

    split: str
    policy: str
    index: int  # position of the question in the stream (file order)
    id: str
    stream_tokens: int  # tokens streamed before this question (0 for one-shot)
    gold: int
    pick_acc: int
    pick_norm: int
    correct_acc: int
    correct_norm: int
    generated: str = ""  # generated reply ("" when not generated for this question)
    gen_pick: int = -1
    correct_gen: int = -1  # -1: not generated; else 0/1


class QAStream:
    """One policy's pass over the questions of a split: feed, score, answer, keep going.

    Args:
        model, tokenizer: a transformers causal LM with a chat template (a plain one for tiny models).
        policy: one of POLICIES.
        n_sink, cache: S and L (S + R = L) for `streaming`; `window` uses 0 + L.
        chunk: most tokens per forward.
        max_new_tokens: generated reply length limit (generative metric).
    """

    def __init__(self, model: Any, tokenizer: Any, policy: str, n_sink: int, cache: int, chunk: int,
                 max_new_tokens: int):
        self.model, self.tok, self.policy = model, tokenizer, policy
        self.n_sink = {"streaming": n_sink, "window": 0}.get(policy, 0)
        self.window = cache - self.n_sink if policy in ("streaming", "window") else None
        self.chunk, self.max_new = chunk, max_new_tokens
        self.stop = sorted(stop_ids(model, tokenizer))
        self.reader = self._new_reader()
        self.prev: list[dict[str, str]] = []  # the last exchange, for the template's text of the next turn
        self.pending: list[int] = []  # the previous answer's tokens, fed with the next question
        self.template_mismatches = 0

    def _new_reader(self) -> StreamingSession:
        return StreamingSession(self.model, self.n_sink, self.window, self.chunk)

    def _turn_text(self, user: str) -> str:
        """Template text the new user turn adds (with the assistant prompt) after the stream so far.

        Rendered against the previous exchange only (templates are local to a turn), not the whole
        conversation, whose rendering would cost O(questions) per question."""
        msgs = self.prev + [{"role": "user", "content": user}]
        full = render(self.tok, msgs, add_generation_prompt=True)
        if not self.prev:
            return full
        before = render(self.tok, self.prev, add_generation_prompt=False)
        if not full.startswith(before):
            self.template_mismatches += 1
            return full
        return full[len(before):]

    def _reply_parts(self, user: str, choice: str) -> tuple[str, str]:
        """(reply text up to the end of the choice, the template's end of the turn) as the stream holds it."""
        head = render(self.tok, [{"role": "user", "content": user}], add_generation_prompt=True)
        full = render(self.tok, [{"role": "user", "content": user}, {"role": "assistant", "content": choice}],
                      add_generation_prompt=False)
        tail = full[len(head):] if full.startswith(head) else choice
        cut = tail.find(choice)
        if cut < 0:
            self.template_mismatches += 1
            return choice, ""
        return tail[:cut + len(choice)], tail[cut + len(choice):]

    def ask(self, q: Question, split: str, index: int, generate: bool) -> Answer:
        """Feed the question (after the previous answer), score its choices, answer, return the row."""
        if self.policy == "one_shot":
            self.reader, self.prev, self.pending = self._new_reader(), [], []
        user = user_text(q)
        position = self.reader.seen + len(self.pending)
        generated = None
        if generate:  # on a branch: the same question with its lettered choices, a greedy reply
            with self.reader.branch():
                self.reader.feed(self.pending + self.tok(self._turn_text(choices_text(q)),
                                                          add_special_tokens=False).input_ids)
                generated = self.reader.generate(max_new_tokens=self.max_new, eos_token_id=self.stop)
        ids = self.pending + self.tok(self._turn_text(user), add_special_tokens=False).input_ids
        self.reader.feed(ids)
        parts = [self._reply_parts(user, c) for c in q.choices]
        conts = [self.tok(head, add_special_tokens=False).input_ids for head, _ in parts]
        lps = self.reader.score_many(conts)
        ll = torch.stack([lp.double().sum() for lp in lps])
        pick_acc = int(ll.argmax())
        pick_norm = int((ll / torch.tensor([max(1, len(c)) for c in q.choices], dtype=torch.float64)).argmax())
        row = Answer(split, self.policy, index, q.id, position, q.answer, pick_acc, pick_norm,
                     int(pick_acc == q.answer), int(pick_norm == q.answer))
        if generated is not None:
            text = self.tok.decode([t for t in generated if t not in self.stop], skip_special_tokens=True)
            pick = parse_reply(text, q)
            row.generated, row.gen_pick = text.strip(), -1 if pick is None else pick
            row.correct_gen = int(pick == q.answer)
        # The acc_norm choice becomes the model's answer in the stream (fed with the next question).
        head, end = parts[pick_norm]
        self.pending = conts[pick_norm] + (self.tok(end, add_special_tokens=False).input_ids if end else [])
        self.prev = [{"role": "user", "content": user}, {"role": "assistant", "content": q.choices[pick_norm]}]
        return row

    # ---------------------------------------------------------------------------------- resume state
    def state_dict(self) -> dict:
        snap = self.reader.snapshot()
        return {"stream": snap.state.to_dict(), "next_logits": snap.next_logits, "prev": self.prev,
                "pending": self.pending, "template_mismatches": self.template_mismatches}

    def load_state_dict(self, d: dict) -> None:
        self.reader.restore(Snapshot(StreamState.from_dict(d["stream"]), d["next_logits"]))
        self.prev, self.pending = d["prev"], d["pending"]
        self.template_mismatches = int(d["template_mismatches"])


def paired_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b in points (a, b: 0/1 per question, same questions) and its paired 95% bootstrap
    interval (percentiles of 2,000 resamples of the questions)."""
    d = (np.asarray(a, float) - np.asarray(b, float)) * 100
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, (n_boot, d.size))].mean(1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def run_policy(ctx: RunContext, model: Any, tok: Any, split: str, questions: list[Question], policy: str,
               key: dict) -> tuple[list[Answer], dict]:
    """One policy over one split, checkpointed every `eval.checkpoint_every_s` seconds (resumes)."""
    e, cfg = ctx.cfg.experiment, ctx.cfg
    qa = QAStream(model, tok, policy, int(e.n_sink), int(e.cache), int(ctx.cfg.eval.chunk), int(e.max_new_tokens))
    ck = Checkpoint(ctx.checkpoint_dir, f"{split}_{policy}", config_key({**key, "split": split, "policy": policy}))
    saved = ck.load() or {}
    rows = [Answer(**r) for r in saved.get("rows", [])]
    info = saved.get("info", {"stopped_at_question": None, "stopped_at_token": None, "stop_reason": "",
                              "seconds": 0.0, "cache_len_max": 0})
    if saved.get("qa"):
        qa.load_state_dict(saved["qa"])
        ctx.log(f"{split}/{policy}: resuming after {len(rows)} questions")
    every, dense_max = int(e.generate_every), int(e.dense_max_tokens)
    t0, last_save = time.time() - float(info["seconds"]), time.time()
    for k in tqdm(range(len(rows), len(questions)), desc=f"{split}/{policy}", unit="q", mininterval=10):
        if info["stop_reason"]:
            break
        if policy == "dense" and qa.reader.seen >= dense_max:
            info.update(stopped_at_question=k, stopped_at_token=qa.reader.seen,
                        stop_reason=f"dense_max_tokens ({dense_max}) reached")
            ctx.log(f"{split}/dense: stopped before question {k} at {qa.reader.seen:,} tokens "
                    f"({info['stop_reason']})")
            break
        try:
            rows.append(qa.ask(questions[k], split, k, every > 0 and k % every == 0))
        except (torch.OutOfMemoryError, MemoryError) as err:  # dense: where memory ends, recorded
            info.update(stopped_at_question=k, stopped_at_token=qa.reader.seen, stop_reason=f"out of memory: {err}")
            ctx.log(f"{split}/{policy}: out of memory at question {k}, {qa.reader.seen:,} tokens")
            break
        info["cache_len_max"] = max(info["cache_len_max"], qa.reader.cache_len)
        if time.time() - last_save > float(cfg.eval.checkpoint_every_s):
            info["seconds"] = time.time() - t0
            ck.save({"rows": [asdict(r) for r in rows], "info": info, "qa": qa.state_dict()})
            last_save = time.time()
    info["seconds"] = time.time() - t0
    info["template_mismatches"] = qa.template_mismatches
    ck.save({"rows": [asdict(r) for r in rows], "info": info, "qa": None})
    return rows, info


def _acc(rows: list[Answer], field: str) -> float:
    vals = [getattr(r, field) for r in rows if getattr(r, field) >= 0]
    return 100.0 * sum(vals) / len(vals) if vals else float("nan")


def _paired_metrics(ctx: RunContext, name: str, a: list[Answer], b: list[Answer], field: str, what: str,
                    seed: int) -> tuple[float, float, float, int]:
    """Metric `name` = accuracy(a) - accuracy(b) in points on the questions both answered (and both
    generated, for `correct_gen`), with `.ci_lo` / `.ci_hi`, the paired 95% bootstrap interval."""
    bi = {r.index: getattr(r, field) for r in b if getattr(r, field) >= 0}
    pairs = [(getattr(r, field), bi[r.index]) for r in a if getattr(r, field) >= 0 and r.index in bi]
    n = len(pairs)
    d, lo, hi = paired_diff(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), seed=seed)
    if n:
        note = f"{what}; paired 95% bootstrap interval [{lo:+.2f}, {hi:+.2f}] over {n} questions"
        ctx.metric(name, d, "points", "none", note=note)
        ctx.metric(f"{name}.ci_lo", lo, "points", "none", note=f"lower end of the paired 95% interval ({n} questions)")
        ctx.metric(f"{name}.ci_hi", hi, "points", "none", note=f"upper end of the paired 95% interval ({n} questions)")
    return d, lo, hi, n


def _report_split(ctx: RunContext, split: str, res: dict[str, tuple[list[Answer], dict]], L: int,
                  context: int | None) -> list[dict]:
    """Metrics and table rows of one split."""
    seed = int(ctx.cfg.seed)
    base = res["one_shot"][0]
    table = []
    for pol, (rows, info) in res.items():
        n_gen = sum(r.correct_gen >= 0 for r in rows)
        for field, m in (("correct_acc", "acc"), ("correct_norm", "acc_norm"), ("correct_gen", "em")):
            if field == "correct_gen" and not n_gen:
                continue
            n = n_gen if field == "correct_gen" else len(rows)
            ctx.metric(f"{split}.{pol}.{m}", _acc(rows, field), "%", "higher",
                       note=f"{n} questions" + (" (generated replies, exact match)" if m == "em" else ""))
        ctx.metric(f"{split}.{pol}.questions", len(rows), "questions", "none")
        ctx.metric(f"{split}.{pol}.seconds", info["seconds"], "s", "lower", note="all legs of a resumed run")
        row = {"split": split, "policy": pol, "questions": len(rows), "acc": _acc(rows, "correct_acc"),
               "acc_norm": _acc(rows, "correct_norm"), "em": _acc(rows, "correct_gen"), "em_questions": n_gen,
               "d_acc_norm": None, "d_acc_norm_ci": "", "d_em": None, "d_em_ci": "", "seconds": info["seconds"]}
        if pol != "one_shot":
            for field, m, key in (("correct_norm", "acc_norm", "d_acc_norm"), ("correct_acc", "acc", None),
                                  ("correct_gen", "em", "d_em")):
                d, lo, hi, n = _paired_metrics(ctx, f"{split}.{pol}.{m}_minus_one_shot", rows, base, field,
                                               f"{pol} - one-shot, {m}", seed)
                if key and n:
                    row[key], row[f"{key}_ci"] = d, f"[{lo:+.1f}, {hi:+.1f}]"
        table.append(row)
    if "streaming" in res:
        rows, info = res["streaming"]
        ctx.metric(f"{split}.streaming.cache_over_budget", info["cache_len_max"] - L, "tokens", "lower",
                   note=f"most tokens the cache kept minus the budget {L}: <= 0 means bounded")
        ctx.metric(f"{split}.stream_tokens", max((r.stream_tokens for r in rows), default=0), "tokens", "none",
                   note="tokens streamed before the last question")
        if "window" in res:  # only questions after the cache first filled: before that both are dense
            full = [r for r in res["window"][0] if r.stream_tokens >= L]
            _paired_metrics(ctx, f"{split}.window_minus_streaming.acc_norm", full, rows, "correct_norm",
                            "window - streaming, acc_norm, questions after the cache first filled", seed)
    if "dense" in res:
        rows, info = res["dense"]
        ctx.metric(f"{split}.dense.stopped_at_token", info["stopped_at_token"] or 0, "tokens", "none",
                   note=info["stop_reason"] or "ran to the end of the split")
        if context:
            for part, sel in (("within_context", [r for r in rows if r.stream_tokens < context]),
                              ("past_context", [r for r in rows if r.stream_tokens >= context])):
                _paired_metrics(ctx, f"{split}.dense.{part}.acc_norm_minus_one_shot", sel, base, "correct_norm",
                                f"dense - one-shot, acc_norm, questions starting {part.replace('_', ' ')} "
                                f"({context} tokens)", seed)
    return table


@dataclass
class StreamQASettings:
    """Table 5 (`experiment.*`); defaults as the paper profile (every question, cache 1024)."""

    splits: list[str] = setting(list(SPLITS), ListOf(Choice(tuple(SPLITS)), unique=True),
                                "read from <data_dir>/arc/<split>_<part>.jsonl")
    part: str = setting("test", Choice(tuple(PARTS)), "test | dev")
    questions: int | None = setting(None, pos_int(null=True), "the first N questions of each split, in file "
                                    "order (null: all)")
    policies: list[str] = setting(list(POLICIES), ListOf(Choice(POLICIES), unique=True),
                                  "one_shot (the baseline every policy is paired with) and the stream policies")
    cache: int = setting(1024, CACHE, "L: streaming S+(L-S), window 0+L (the paper: 1024)")
    n_sink: int = setting(4, nonneg_int(), "S attention sinks")
    dense_max_tokens: int = setting(16384, pos_int(), "dense stops here (past the model's context on purpose)")
    generate_every: int = setting(1, nonneg_int(), "generated reply + exact match on every k-th question (0: off)")
    max_new_tokens: int = setting(12, pos_int(hi=4096), "greedy reply length limit")


STREAM_QA_RULES = [
    SINKS_FIT_CACHE,
    Rule(("policies",), lambda ps: "one_shot" in ps,
         "policies {0} must include one_shot, the baseline every policy is paired with", "policies"),
]


@experiment(settings=StreamQASettings, rules=STREAM_QA_RULES, figures=draw_stream_qa)
def stream_qa(ctx: RunContext) -> None:
    """Table 5: ARC questions as one stream per policy; acc / acc_norm (and generated exact match)."""
    from llm_efficiency_bench.streaming_llm.experiments import _check_cache, _load

    e, cfg = ctx.cfg.experiment, ctx.cfg
    policies = list(e.policies)
    S, L = int(e.n_sink), int(e.cache)
    splits = {s: load_arc(s, str(e.part), cfg.data_dir) for s in e.splits}  # a missing file fails before the model
    lm = _load(ctx)
    _check_cache(ctx, lm, S, L, "experiment.cache")
    if ctx.profile == "paper" and "chat" not in lm.name:
        raise ConfigError("model", f"{lm.name} is not a chat model; Table 5 uses Llama-2-Chat: add "
                          "model=llama2_7b_chat (or llama2_13b_chat)")
    key = {"model": cfg.model, "dtype": str(lm.dtype), "n_sink": S, "cache": L, "part": e.part,
           "questions": e.questions, "generate_every": e.generate_every, "max_new_tokens": e.max_new_tokens,
           "chunk": ctx.cfg.eval.chunk, "dense_max_tokens": e.dense_max_tokens, "instruction": INSTRUCTION,
           "prompt_version": PROMPT_VERSION}
    answers, table = [], []
    for split, questions in splits.items():
        if e.questions is not None:
            questions = questions[: int(e.questions)]
        ctx.log(f"{split} {e.part}: {len(questions)} questions, policies {policies}")
        res = {}
        for pol in policies:
            rows, info = run_policy(ctx, lm.model, lm.tokenizer, split, questions, pol, key)
            res[pol] = (rows, info)
            ctx.log(f"{split}/{pol}: acc_norm {_acc(rows, 'correct_norm'):.2f} over {len(rows)} questions in "
                    f"{info['seconds']:.0f} s; template mismatches {info['template_mismatches']}")
            answers += [asdict(r) for r in rows]
        table += _report_split(ctx, split, res, L, lm.context)
    ctx.csv("answers", answers)
    g = int(e.generate_every)
    t5 = paper_table("streaming_llm", "table5")["llama2_7b_chat"]
    paper = ", ".join(f"{p} {v[0]:.2f} / {v[1]:.2f}" for p, v in t5.items())
    ctx.table("table5", f"Table 5 — streaming QA, {lm.name}, cache {S}+{L - S} (window 0+{L}), ARC {e.part}",
              table, digits=2,
              notes=["acc / acc_norm: lm-eval's ARC scoring inside the stream (user turn 'Question: ...\\nAnswer:', "
                     "log-likelihood of each choice's text as the reply; acc_norm per character); the acc_norm "
                     "choice is appended as the answer",
                     f"em: on every {g}-th question, on a branch of the stream, the question with its lettered "
                     f"choices and a greedy reply (<= {e.max_new_tokens} tokens), exact match of the letter or "
                     "choice text" if g else "em: not measured",
                     "d_*: policy - one-shot on the same questions, points, paired 95% bootstrap interval",
                     f"dense: no eviction until {int(e.dense_max_tokens):,} tokens (model context {lm.context}); "
                     "answers.csv has every question's row",
                     f"paper (Llama-2-7B-Chat, cache 1024, exact match of generated answers, ARC-E / ARC-C): {paper}; "
                     "dense ran out of memory"])
