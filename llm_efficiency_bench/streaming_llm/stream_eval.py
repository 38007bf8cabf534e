"""StreamEval (paper Sec. 4.3, Figs. 8-9; Appendix C, Table 7): line retrieval from one growing stream.

The stream (`stream_eval_data`) is fed to one `generate.StreamingSession` per cache policy, never reset:
the lines since the last query and the next query are read in one exact chunked feed, the answer is
generated greedily (stopping at ">" or a newline) and stays in the stream, as a deployed model's own
reply would. An answer is right when the first number it gives equals the value of the line asked for.

Policies (Fig. 9): StreamingLLM S + (L - S), window attention 0 + L, dense (no eviction; stopped after
`dense_max_tokens`, past the model's trained context, which is where it is expected to fail). Each answer
records its stream position (tokens so far), its distance to the line it asks about (lines and tokens),
and whether that line is still in the policy's cache, so accuracy can be read by position (Fig. 9) and by
distance (Table 7: zero once the answer is older than the cache).

Before the test stream, a short dev stream (another seed) is answered with dense attention inside the
model's context: whether the model retrieves at all when the answer is in its window.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from tqdm import tqdm

from llm_efficiency_bench.core.checkpoint import Checkpoint, config_key
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import Choice, ListOf, Rule, nonneg_int, pos_int
from llm_efficiency_bench.streaming_llm import stream_figures
from llm_efficiency_bench.streaming_llm.engine import StreamState
from llm_efficiency_bench.streaming_llm.generate import Snapshot, StreamingSession
from llm_efficiency_bench.streaming_llm.settings import CACHE, SINKS_FIT_CACHE
from llm_efficiency_bench.streaming_llm.stats import newcombe_diff, paired_diff, wilson
from llm_efficiency_bench.streaming_llm.stream_eval_data import HEADER, QUERY, StreamEval, generate, parse_answer

POLICIES = ("streaming", "window", "dense")
STOPS = [">", "\n"]  # an answer " <8806>" is complete at ">"; a newline ends any other reply


@dataclass
class Answer:
    """One query as a policy answered it."""

    policy: str
    query: int
    after_line: int
    target_line: int
    distance_lines: int
    nominal_distance: int
    stream_tokens: int  # tokens in the stream when the answer starts (query included)
    distance_tokens: int  # stream_tokens - position of the target line's first token
    in_cache: int  # 1 when the whole target line is still in the policy's cache
    past_context: int  # 1 when stream_tokens exceeds the model's trained context
    cache_tokens: int  # tokens the cache kept after the answer (S + R at most for a bounded policy)
    expected: int
    generated: str
    correct: int


class Encoder:
    """Token ids of stream pieces as they tokenize inside the stream (each piece follows a newline).

    Tokenizers that add a prefix space to a text's first word (SentencePiece) would tokenize a line on its
    own differently from the same line after "\\n"; encoding "\\n" + piece and dropping the newline's ids
    gives the in-stream ids for either kind of tokenizer.
    """

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        self.nl = tokenizer("\n", add_special_tokens=False).input_ids

    def __call__(self, text: str) -> list[int]:
        if text == HEADER:  # the stream's start: with the tokenizer's BOS, if it has one
            return self.tok(text, add_special_tokens=True).input_ids
        ids = self.tok("\n" + text, add_special_tokens=False).input_ids
        if ids[:len(self.nl)] == self.nl:
            return ids[len(self.nl):]
        return self.tok(text, add_special_tokens=False).input_ids  # the newline merged with the text


def in_cache(line_start: int, stream_tokens: int, window: int | None) -> bool:
    """Whether a line starting at token `line_start` is still fully cached when `stream_tokens` have been
    streamed: always for dense, else when it lies in the last `window` tokens (the sinks hold the first
    tokens of the stream, the header, never a register line)."""
    return window is None or stream_tokens - line_start <= window


def answer_stream(session: StreamingSession, enc: Encoder, data: StreamEval, policy: str, context: int | None,
                  max_new_tokens: int, stop_tokens: int | None = None, resume: dict | None = None,
                  save: Callable[[dict], None] | None = None, desc: str = "") -> list[Answer]:
    """Stream `data` through `session`, answering every query; returns the answers in order.

    Args:
        stop_tokens: stop before the first query that would start past this many streamed tokens (dense).
        resume: a state `save` wrote earlier (same settings): continue after its last answer.
        save: called with the resume state after each answer (the caller decides how often to write it).
    """
    if resume is None and session.seen:
        raise ValueError(f"answer_stream: the session already holds {session.seen} tokens; a StreamEval stream "
                         "starts at token 0 (its line positions and cache membership are counted from there): "
                         "pass a new StreamingSession, or `resume` to continue a saved stream")
    R = session.policy.window
    answers: list[Answer] = []
    pending: list[int] = []
    starts: dict[int, int] = {}
    first = 0  # index of the first piece still to stream
    if resume is not None:
        answers, pending, starts = list(resume["answers"]), list(resume["pending"]), dict(resume["starts"])
        first = resume["next_piece"]
        session.restore(Snapshot(StreamState(**resume["state"]), resume["next_logits"]))
    bar = tqdm(total=len(data.queries), initial=len(answers), desc=desc, unit="query", mininterval=10)
    for k, (piece, line, q) in enumerate(data.pieces()):
        if k < first:
            continue  # streamed before the resume point
        if line is not None:
            starts[line] = session.seen + len(pending)
        pending += enc(piece)
        if q is None:
            continue
        t = session.seen + len(pending)
        if stop_tokens is not None and t > stop_tokens:
            break
        out = session.generate(pending, max_new_tokens=max_new_tokens, stop_strings=STOPS, tokenizer=enc.tok)
        text = enc.tok.decode(out)
        pending = [] if text.endswith("\n") else list(enc.nl)  # the next line starts on a new line
        got = parse_answer(text)
        answers.append(Answer(policy, q.index, q.after_line, q.target, q.distance, q.nominal, t,
                              t - starts[q.target], int(in_cache(starts[q.target], t, R)),
                              int(context is not None and t > context), session.cache_len, q.value, text,
                              int(got == q.value)))
        bar.update(1)
        if save is not None:
            snap = session.snapshot()
            save({"answers": list(answers), "pending": list(pending), "starts": dict(starts), "next_piece": k + 1,
                  "state": snap.state.to_dict(), "next_logits": snap.next_logits})
    bar.close()
    return answers


def one_shot(lm: Any, enc: Encoder, data: StreamEval, distance: int, before: int, max_new_tokens: int,
             chunk: int) -> list[int]:
    """Retrieval with nothing else in the way: for each query slot of `data`, a fresh dense session holds the
    header, the lines from `before` lines ahead of the asked line up to the query's line, and one query for
    the line `distance` back (no earlier queries or answers). Returns 1/0 per slot."""
    out = []
    for q in data.queries:
        target = q.after_line - distance
        if target < 0:
            continue
        session = StreamingSession(lm.model, 0, None, chunk)
        ids = enc(HEADER)
        for i in range(max(0, target - before), q.after_line + 1):
            ids += enc(data.line_text(i))
        ids += enc(QUERY.format(key=target))
        text = enc.tok.decode(session.generate(ids, max_new_tokens=max_new_tokens, stop_strings=STOPS,
                                               tokenizer=enc.tok))
        out.append(int(parse_answer(text) == data.values[target]))
    return out


# ---------------------------------------------------------------------------------------------- experiment
def _data(seed: int, lines: int, distances: list[int], query_every: int, setting: str) -> StreamEval:
    try:
        return generate(int(seed), int(lines), [int(d) for d in distances], int(query_every))
    except ValueError as err:
        raise ConfigError(setting, f"StreamEval: {err}") from err


def _session(lm: Any, policy: str, S: int, L: int, chunk: int) -> StreamingSession:
    """StreamingLLM S + (L - S), window attention 0 + L, or dense (no eviction)."""
    n_sink, window = {"streaming": (S, L - S), "window": (0, L), "dense": (0, None)}[policy]
    return StreamingSession(lm.model, n_sink, window, chunk)


def _run_policy(ctx: RunContext, lm: Any, enc: Encoder, data: StreamEval, policy: str, stop: int | None) -> dict:
    """Answer the stream under one policy, checkpointed (answers + cache state) and resumable."""
    e, cfg = ctx.cfg.experiment, ctx.cfg
    S, L = int(e.n_sink), int(e.cache)
    session = _session(lm, policy, S, L, int(cfg.eval.chunk))
    key = config_key({"model": cfg.model, "dtype": str(lm.dtype), "policy": policy, "S": S, "L": L,
                      "data": data.sha256(), "max_new": int(e.max_new_tokens), "chunk": int(cfg.eval.chunk),
                      "stop": stop})
    ck = Checkpoint(ctx.checkpoint_dir, f"stream_eval_{policy}", key)
    state = ck.load()
    if state is not None and state.get("complete"):
        ctx.log(f"{policy}: answers from the checkpoint of an earlier leg ({len(state['answers'])} queries)")
        ctx.resumed_seconds += state["seconds"]
        return state
    earlier = (state or {}).get("seconds", 0.0)  # a resumed policy's earlier legs count in its time
    ctx.resumed_seconds += earlier
    every = float(cfg.eval.checkpoint_every_s)
    last = [time.time()]

    def save(st: dict) -> None:
        if time.time() - last[0] >= every:
            ck.save({**st, "seconds": earlier + time.time() - t0})
            last[0] = time.time()

    t0 = time.time()
    failed = None
    answers: list[Answer] = state["answers"] if state else []
    try:
        answers = answer_stream(session, enc, data, policy, lm.context, int(e.max_new_tokens), stop_tokens=stop,
                                resume=state, save=save, desc=policy)
    except (torch.OutOfMemoryError, MemoryError) as err:  # dense on a long stream: the paper's OOM
        failed = f"out of memory after {session.seen:,} tokens ({type(err).__name__})"
        ctx.log(f"{policy}: {failed}")
    out = {"answers": answers, "complete": True, "seconds": earlier + time.time() - t0,
           "seen": session.seen, "kv_mb": session.nbytes() / 2**20, "cache_max": max(
               [a.cache_tokens for a in answers] or [0]), "failed": failed}
    ck.save(out)
    acc = sum(a.correct for a in answers) / max(1, len(answers))
    ctx.log(f"{policy}: {len(answers)} queries, {session.seen:,} tokens, accuracy {acc:.1%}, "
            f"{out['seconds']:.0f} s")
    return out


def _pct(ctx: RunContext, name: str, rows: list[Answer], note: str) -> None:
    """Accuracy (%) of `rows` as a metric with its standard error and Wilson 95% interval in the note."""
    if not rows:
        return
    k, n = sum(a.correct for a in rows), len(rows)
    lo, hi = wilson(k, n)
    p = k / n
    ctx.metric(name, 100 * p, "%", "higher", stderr=100 * math.sqrt(p * (1 - p) / n),
               note=f"{k}/{n}; Wilson 95% [{100 * lo:.1f}, {100 * hi:.1f}]; {note}")


def _diff(ctx: RunContext, name: str, d: tuple[float, float, float], note: str) -> None:
    """A difference in points with its 95% interval as `<name>`, `<name>.ci_lo`, `<name>.ci_hi`."""
    v, lo, hi = (100 * x for x in d)
    ctx.metric(name, v, "points", "none", note=f"95% [{lo:.1f}, {hi:.1f}]; {note}")
    ctx.metric(f"{name}.ci_lo", lo, "points", "none", note="lower end of the 95% interval")
    ctx.metric(f"{name}.ci_hi", hi, "points", "none", note="upper end of the 95% interval")


LINES = pos_int(hi=50_000)  # range of line counts and distances (the paper's stream: ~5,500 lines)


@dataclass
class StreamEvalSettings:
    """StreamEval (`experiment.*`); defaults as the paper profile (Fig. 8's ~5,500 lines, distance 20)."""

    seed: int = setting(0, nonneg_int(), "the test stream (StreamEval v1, docs/stream_eval.md)")
    lines: int = setting(5500, LINES, "register lines in the test stream")
    distances: list[int] = setting([20], ListOf(LINES, unique=True), "lines back a query asks; the paper's "
                                   "stream: [20]; several: a sweep (Table 7)")
    query_every: int = setting(10, LINES, "a query every this many lines (Fig. 8: 10)")
    dev_seed: int = setting(1, nonneg_int(), "the dev stream (retrieval check), never the test stream")
    dev_lines: int = setting(150, LINES, "register lines in the dev stream")
    dev_distances: list[int] = setting([20], ListOf(LINES, unique=True), "the dev stream's distances, answered "
                                       "by dense attention inside the context")
    dev_one_shot_distances: list[int] = setting([20], ListOf(nonneg_int(hi=50_000), min_len=0, unique=True),
                                                "the same dev lines, one query per fresh prompt (0: the line just "
                                                "before the query)")
    cache: int = setting(2048, CACHE, "L = S + R")
    n_sink: int = setting(4, nonneg_int(), "S attention sinks")
    policies: list[str] = setting(list(POLICIES), ListOf(Choice(POLICIES), unique=True), "cache policies answered")
    dense_max_tokens: int = setting(16384, pos_int(), "dense stops here (past the trained context on purpose)")
    max_new_tokens: int = setting(8, pos_int(hi=4096), '" <" + 5 digits + ">": an answer is complete at ">"')
    position_bins: int = setting(12, pos_int(hi=1000), "stream-position bins of Fig. 9")


STREAM_EVAL_RULES = [
    SINKS_FIT_CACHE,
    Rule(("seed", "dev_seed"), lambda a, b: a != b, "the dev stream's seed must differ from the test stream's ({0})",
         "dev_seed"),
]


@experiment(settings=StreamEvalSettings, rules=STREAM_EVAL_RULES, figures=stream_figures.draw_stream_eval)
def stream_eval(ctx: RunContext) -> None:
    """Figs. 8-9 / Table 7: StreamEval accuracy by stream position and by answer distance, per policy."""
    from llm_efficiency_bench.streaming_llm.experiments import _check_cache, _load

    e, cfg = ctx.cfg.experiment, ctx.cfg
    S, L = int(e.n_sink), int(e.cache)
    policies = [str(p) for p in e.policies]
    data = _data(e.seed, e.lines, list(e.distances), e.query_every, "experiment.lines")
    dev = _data(e.dev_seed, e.dev_lines, list(e.dev_distances), e.query_every, "experiment.dev_lines")
    if not data.queries:
        raise ConfigError("experiment.lines", f"{int(e.lines)} lines hold no query at distances "
                          f"{list(e.distances)}; add lines")
    lm = _load(ctx)
    _check_cache(ctx, lm, S, L, "experiment.cache")
    enc = Encoder(lm.tokenizer)
    ctx.log(f"StreamEval v{data.version}: test seed {data.seed}, {len(data.values)} lines, {len(data.queries)} "
            f"queries at distances {data.distances}; dev seed {dev.seed}, {len(dev.queries)} queries")
    # Dev check: dense inside the model's context, answers in the window.
    t0 = time.time()
    dev_ans = answer_stream(_session(lm, "dense", S, L, int(cfg.eval.chunk)), enc, dev, "dense", lm.context,
                            int(e.max_new_tokens), desc="dev")
    _pct(ctx, "dev.accuracy", dev_ans, f"dev stream (seed {dev.seed}, distances {dev.distances}), dense, "
         f"every answer in the window; {time.time() - t0:.0f} s")
    ctx.csv("dev_answers", [asdict(a) for a in dev_ans])
    rows = []
    for d in [int(x) for x in e.dev_one_shot_distances]:  # the same, one query per fresh prompt
        t0 = time.time()
        ok = one_shot(lm, enc, dev, d, 5, int(e.max_new_tokens), int(cfg.eval.chunk))
        k, n = sum(ok), len(ok)
        lo, hi = wilson(k, n)
        rows.append({"distance_lines": d, "n": n, "accuracy": 100 * k / max(1, n), "ci_lo": 100 * lo,
                     "ci_hi": 100 * hi, "seconds": time.time() - t0})
        if n:
            ctx.metric(f"dev.one_shot.accuracy.d{d}", 100 * k / n, "%", "higher",
                       note=f"{k}/{n}; Wilson 95% [{100 * lo:.1f}, {100 * hi:.1f}]; dev stream, a fresh prompt per "
                            f"query: 5 lines before the asked line to {d} lines after it, then the query")
        ctx.log(f"dev one-shot, {d} lines back: {k}/{n}")
    if rows:
        ctx.table("dev_one_shot", f"Dev check — {lm.name}: retrieval from a fresh prompt by distance (dev seed "
                  f"{dev.seed})", rows, digits=1,
                  notes=["each prompt: the header, 5 lines before the asked line up to the query's line, the query; "
                         "no earlier queries or answers; greedy, exact match on the number"])
    runs = {p: _run_policy(ctx, lm, enc, data, p, int(e.dense_max_tokens) if p == "dense" else None)
            for p in policies}
    answers = {p: r["answers"] for p, r in runs.items()}
    ctx.csv("answers", [asdict(a) for p in policies for a in answers[p]])
    _metrics(ctx, lm, data, runs, answers)
    _tables(ctx, lm, data, runs, answers)


def _metrics(ctx: RunContext, lm: Any, data: StreamEval, runs: dict, answers: dict[str, list[Answer]]) -> None:
    e = ctx.cfg.experiment
    L, T = int(e.cache), lm.context
    for p, rows in answers.items():
        _pct(ctx, f"{p}.accuracy", rows, "every query answered")
        for d in data.distances:
            sel = [a for a in rows if a.nominal_distance == d]
            mean_tok = sum(a.distance_tokens for a in sel) / max(1, len(sel))
            _pct(ctx, f"{p}.accuracy.d{d}", sel, f"{d} lines back (~{mean_tok:.0f} tokens)")
        if p == "dense":
            _pct(ctx, "dense.accuracy.within_context", [a for a in rows if not a.past_context],
                 f"queries inside the trained context ({T} tokens)")
            _pct(ctx, "dense.accuracy.past_context", [a for a in rows if a.past_context],
                 f"queries past the trained context ({T} tokens)")
            ctx.metric("dense.stream_tokens", runs[p]["seen"], "tokens", "none",
                       note=runs[p]["failed"] or f"stopped after experiment.dense_max_tokens={int(e.dense_max_tokens)}")
            ctx.metric("dense.kv_cache_mb", runs[p]["kv_mb"], "MiB", "lower", note="KV cache at the end")
        else:
            _pct(ctx, f"{p}.accuracy.in_cache", [a for a in rows if a.in_cache], "asked line still in the cache")
            _pct(ctx, f"{p}.accuracy.beyond_cache", [a for a in rows if not a.in_cache],
                 "asked line evicted (older than the cache)")
        ctx.metric(f"{p}.seconds", runs[p]["seconds"], "s", "lower", note=f"{len(rows)} queries, every leg")
        if len(rows) > 1:  # a model that repeats its previous answer has learnt the stream's last reply, not the lines
            nums = [parse_answer(a.generated) for a in rows]
            same = sum(b is not None and a == b for a, b in zip(nums, nums[1:]))
            ctx.metric(f"{p}.repeats_previous_answer", 100 * same / (len(rows) - 1), "%", "none",
                       note="answers giving the same number as the answer before them")
    st = answers.get("streaming", [])
    if st:
        ctx.metric("streaming.cache_over_budget", runs["streaming"]["cache_max"] - L, "tokens", "lower",
                   note=f"most tokens the cache kept after an answer minus S + R = {L}")
        early = [a for a in st if a.in_cache and not a.past_context]
        late = [a for a in st if a.in_cache and a.past_context]
        if early and late:  # Fig. 9: flat where dense fails, i.e. past the trained context
            _diff(ctx, "streaming.in_cache.late_minus_early",
                  newcombe_diff(sum(a.correct for a in late), len(late), sum(a.correct for a in early), len(early)),
                  f"answers in the cache: {len(late)} queries past the trained context ({T}) minus {len(early)} "
                  "inside it (Newcombe)")
    by = {p: {a.query: a for a in rows} for p, rows in answers.items()}
    if st and "dense" in by:  # the same queries, dense inside its context, streaming after its first eviction
        qs = [a.query for a in st if a.in_cache and a.stream_tokens > L and a.query in by["dense"]
              and not by["dense"][a.query].past_context]
        if qs:
            _diff(ctx, "streaming_minus_dense.in_cache", paired_diff([by["streaming"][q].correct for q in qs],
                                                                    [by["dense"][q].correct for q in qs]),
                  f"paired on {len(qs)} queries: answer in the cache, stream past the cache, dense inside its context "
                  "(bootstrap over queries)")
    if st and "window" in by:
        qs = [a.query for a in st if a.in_cache and a.stream_tokens > L and a.query in by["window"]]
        if qs:
            _diff(ctx, "window_minus_streaming.in_cache", paired_diff([by["window"][q].correct for q in qs],
                                                                     [by["streaming"][q].correct for q in qs]),
                  f"paired on {len(qs)} queries past the cache size whose answer both caches hold (bootstrap)")
    dn = answers.get("dense", [])
    inside, past = [a for a in dn if not a.past_context], [a for a in dn if a.past_context]
    if inside and past:
        _diff(ctx, "dense.past_minus_within_context",
              newcombe_diff(sum(a.correct for a in past), len(past), sum(a.correct for a in inside), len(inside)),
              f"{len(past)} queries past the trained context ({T}) minus {len(inside)} inside it (Newcombe)")


def _tables(ctx: RunContext, lm: Any, data: StreamEval, runs: dict, answers: dict[str, list[Answer]]) -> None:
    e = ctx.cfg.experiment
    S, L = int(e.n_sink), int(e.cache)
    label = {"streaming": f"StreamingLLM {S}+{L - S}", "window": f"window 0+{L}", "dense": "dense"}

    def acc(rows: list[Answer]) -> dict:
        k, n = sum(a.correct for a in rows), len(rows)
        lo, hi = wilson(k, n)
        return {"n": n, "accuracy": 100 * k / n if n else None, "ci_lo": 100 * lo if n else None,
                "ci_hi": 100 * hi if n else None}

    summary = []
    for p, rows in answers.items():
        summary.append({"policy": label[p], **acc(rows), "stream_tokens": runs[p]["seen"],
                        "in_cache": acc([a for a in rows if a.in_cache])["accuracy"],
                        "beyond_cache": acc([a for a in rows if not a.in_cache])["accuracy"],
                        "seconds": runs[p]["seconds"], "note": runs[p]["failed"] or ""})
    desc = data.describe()
    ctx.table("summary", f"StreamEval — {lm.name}, cache {S}+{L - S}, {len(data.values)} lines, "
              f"{len(data.queries)} queries", summary, digits=1,
              notes=[f"dataset: StreamEval v{desc['version']}, seed {desc['seed']}, sha256 {desc['sha256'][:16]}, "
                     f"a query every {desc['query_every']} lines at distances {desc['distances']} (lines back)",
                     f"accuracy in %, Wilson 95% interval; greedy answers (at most {int(e.max_new_tokens)} tokens, "
                     "stop at '>' or a newline) kept in the stream; exact match on the number",
                     f"dense stops after {int(e.dense_max_tokens):,} tokens (trained context {lm.context:,})"])
    rows = []
    for p, ans in answers.items():
        for d in data.distances:
            sel = [a for a in ans if a.nominal_distance == d]
            if sel:
                rows.append({"policy": label[p], "distance_lines": d,
                             "distance_tokens": sum(a.distance_tokens for a in sel) / len(sel),
                             "share_in_cache": sum(a.in_cache for a in sel) / len(sel), **acc(sel)})
    ctx.table("by_distance", f"StreamEval accuracy by answer distance — cache {S}+{L - S} (Table 7 style)", rows,
              digits=1, notes=["distance_tokens: mean tokens from the asked line to the end of the query"])
    pos = stream_figures.stream_eval_positions([asdict(a) for ans in answers.values() for a in ans],
                                        int(e.position_bins))
    ctx.table("by_position", f"StreamEval accuracy by stream position — cache {S}+{L - S} (Fig. 9 style)",
              [{**r, "policy": label[r["policy"]]} for r in pos], digits=1,
              notes=["queries whose asked line StreamingLLM still caches, the same queries for every policy; "
                     "equal-width bins of the query's stream position (tokens)"])
    ctx.csv("dataset", [desc])
