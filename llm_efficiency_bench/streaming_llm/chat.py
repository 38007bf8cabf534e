"""Streaming chat: one multi-round conversation, far longer than the cache, through one sink cache.

This is the deployment the paper is about (Sec. 1 and Fig. 1: "multi-round dialogue", Sec. 4.4 streaming
question answering): every user turn is appended to the same KV cache with the model's chat template,
the reply is generated greedily into that cache, and nothing is ever reset or re-encoded. The cache keeps
S attention sinks + the R most recent tokens (Sec. 3.2), so memory stays flat and the model keeps
answering after the conversation has overflowed the cache many times.

The loop is `generate.StreamingSession`: a user turn is read in chunks with the exact sink + band masks,
the reply is generated one token per forward, positions within the cache as the paper assigns them.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import experiment, setting
from llm_efficiency_bench.core.paths import REPO_ROOT, data_dir as resolve_data_dir
from llm_efficiency_bench.core.runner import RunContext
from llm_efficiency_bench.core.validate import Text, nonneg_int, pos_int
from llm_efficiency_bench.streaming_llm import figures
from llm_efficiency_bench.streaming_llm.generate import StreamingSession
from llm_efficiency_bench.streaming_llm.ppl import rss_mb
from llm_efficiency_bench.streaming_llm.settings import CACHE, SINKS_FIT_CACHE

SETTING = "experiment.conversation"


def resolve_conversation(value: str | None, data_dir_setting: str | None) -> Path:
    """The conversation file: an absolute path, or a path relative to the data directory (or the repo).

    Raises:
        ConfigError: naming `experiment.conversation` when the file does not exist.
    """
    if not value:
        raise ConfigError(SETTING, "no conversation file set")
    p = Path(str(value)).expanduser()
    tried = [p] if p.is_absolute() else []
    if not p.is_absolute():
        try:
            tried.append(resolve_data_dir(data_dir_setting) / p)
        except ConfigError:
            pass  # no data directory: only the repository is searched
        tried.append(REPO_ROOT / p)
    for c in tried:
        if c.is_file():
            return c
    raise ConfigError(SETTING, f"conversation file {str(value)!r} not found (looked at: "
                      f"{', '.join(str(c) for c in tried)})")


def load_conversation(path: Path) -> list[str]:
    """User turns in order, flattened into one long session.

    Formats: `.jsonl` / `.json` entries with `turns` (a list of user messages, as MT-Bench) or one of
    `content` / `text` / `prompt` (a single message); any other extension: one user turn per non-empty line.
    """
    from llm_efficiency_bench.core.data import iter_jsonl, read_text

    text = read_text(path, "experiment.conversation")  # strict UTF-8: a non-text file fails with its name
    if path.suffix in (".jsonl", ".json"):
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(SETTING, f"{path} is not valid JSON ({e})") from e
            entries = data if isinstance(data, list) else [data]
        else:  # a bad line is named by its number
            entries = [row for _, row in iter_jsonl(path, SETTING, objects=False)]
        turns: list[str] = []
        for k, entry in enumerate(entries):
            if isinstance(entry, str):
                turns.append(entry)
            elif isinstance(entry, dict) and isinstance(entry.get("turns"), list):
                turns += [str(t) for t in entry["turns"]]
            elif isinstance(entry, dict) and any(isinstance(entry.get(f), str) for f in ("content", "text", "prompt")):
                turns.append(next(entry[f] for f in ("content", "text", "prompt") if isinstance(entry.get(f), str)))
            else:
                raise ConfigError(SETTING, f"{path}: entry {k + 1} has neither `turns` nor `content`/`text`/`prompt`")
    else:
        turns = text.splitlines()
    turns = [t for t in turns if t.strip()]
    if not turns:
        raise ConfigError(SETTING, f"{path} has no user turns")
    return turns


def render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """The conversation as text in the model's chat template (a plain `Role: text` one for tiny models).

    The plain template renders a reply right after "Assistant:" (what the model generated after that
    prompt, usually starting with a space), so each turn's text extends the previous one exactly.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    eos = tokenizer.eos_token or ""
    text = "".join(f"{m['role'].capitalize()}:{'' if m['role'] == 'assistant' else ' '}{m['content']}{eos}\n"
                   for m in messages)
    return text + ("Assistant:" if add_generation_prompt else "")


def stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a reply: the tokenizer's and the generation config's end-of-sequence ids."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return {int(i) for i in ids if i is not None}


@dataclass
class Round:
    """What one user turn cost and left behind."""

    round: int
    user: str
    reply: str
    tokens_in: int  # template + user tokens fed for this turn
    tokens_out: int  # generated tokens (each also fed into the cache)
    tokens_total: int  # tokens the conversation has streamed so far
    cache_len: int  # tokens kept in the cache after the turn (<= S + R)
    keys_max: int  # most keys any forward of this turn attended to (<= S + R + tokens in that forward)
    prefill_ms: float
    ms_per_token: float  # decoding: wall time / generated tokens
    rss_mb: float
    kv_cache_mb: float


class StreamingChat:
    """A conversation with one attention-sink cache that is never reset (paper Sec. 3.2).

    The generation loop is `generate.StreamingSession`, the suite's one loop: each user turn is fed in
    chunks through the exact evaluator, the reply is generated greedily one token per forward into the
    same stream.

    Args:
        model: a transformers causal LM (RoPE or ALiBi).
        tokenizer: its tokenizer (chat template used when it has one).
        n_sink: S, initial tokens kept forever.
        window: R, most recent tokens kept.
        max_new_tokens: greedy reply length limit.
    """

    def __init__(self, model: Any, tokenizer: Any, n_sink: int, window: int, max_new_tokens: int):
        self.model, self.tok = model, tokenizer
        self.session = StreamingSession(model, n_sink, window)
        self.capacity = n_sink + window
        self.max_new = int(max_new_tokens)
        self.stop = stop_ids(model, tokenizer)
        self.fed_text = ""  # the streamed tokens' text in template form, to find what the next turn adds
        self.messages: list[dict[str, str]] = []
        self.overflows = 0  # turns after which the cache kept, or a forward attended, more than the policy allows
        self.template_mismatches = 0

    @property
    def fed(self) -> int:
        """Tokens streamed into the cache so far."""
        return self.session.seen

    def _check(self, longest_forward: int) -> None:
        """The cache policy, checked after every turn: keep <= S + R, attend <= S + R + tokens per forward."""
        if self.session.cache_len > self.capacity or self.session.keys_max > self.capacity + longest_forward:
            self.overflows += 1

    def _delta(self, user: str) -> str:
        """Text the template adds for this user turn (plus the generation prompt) after what is cached."""
        self.messages.append({"role": "user", "content": user})
        target = render(self.tok, self.messages, add_generation_prompt=True)
        if target.startswith(self.fed_text):
            return target[len(self.fed_text):]
        self.template_mismatches += 1  # the template rewrote earlier text: feed only what differs
        return target[len(os.path.commonprefix([target, self.fed_text])):]

    def turn(self, user: str) -> Round:
        """One round: feed the user turn, generate the reply greedily into the same cache."""
        delta = self._delta(user)
        ids = self.tok(delta, add_special_tokens=False).input_ids
        self.session.keys_max = 0
        t0 = time.perf_counter()
        self.session.feed(ids)
        prefill_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        gen = self.session.generate(max_new_tokens=self.max_new, eos_token_id=sorted(self.stop))
        decode_ms = (time.perf_counter() - t0) * 1e3
        self._check(min(len(ids), self.session.chunk))
        ended = bool(gen) and gen[-1] in self.stop
        content = self.tok.decode(gen[:-1] if ended else gen, skip_special_tokens=False)
        self.fed_text += delta + content + (self.tok.decode(gen[-1:], skip_special_tokens=False) if ended else "")
        self.messages.append({"role": "assistant", "content": content})
        return Round(round=len(self.messages) // 2, user=user, reply=content.strip(), tokens_in=len(ids),
                     tokens_out=len(gen), tokens_total=self.fed, cache_len=self.session.cache_len,
                     keys_max=self.session.keys_max, prefill_ms=prefill_ms,
                     ms_per_token=decode_ms / max(1, len(gen)), rss_mb=rss_mb(),
                     kv_cache_mb=self.session.nbytes() / 2**20)


def _clip(text: str, n: int = 160) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


@dataclass
class ChatSettings:
    """The streaming chat (`experiment.*`); defaults as the paper profile (all 160 MT-Bench turns)."""

    conversation: str = setting("mt_bench/mt_bench.jsonl", Text(), "relative to the data directory (or an "
                                "absolute path); all turns of all entries are flattened into one conversation stream")
    rounds: int | None = setting(None, pos_int(null=True), "user turns used (null: all)")
    cache: int = setting(1024, CACHE, "S + R")
    n_sink: int = setting(4, nonneg_int(), "S attention sinks")
    max_new_tokens: int = setting(256, pos_int(hi=100_000), "greedy reply length limit")


@experiment(settings=ChatSettings, rules=[SINKS_FIT_CACHE], figures=figures.draw_chat)
def chat(ctx: RunContext) -> None:
    """A long multi-round chat through one S+R sink cache: cache length, latency and memory per round."""
    from llm_efficiency_bench.streaming_llm.experiments import _check_cache, _load

    e, cfg = ctx.cfg.experiment, ctx.cfg
    S, L = int(e.n_sink), int(e.cache)
    path = resolve_conversation(e.conversation, cfg.data_dir)
    turns = load_conversation(path)
    if e.get("rounds"):
        turns = turns[: int(e.rounds)]
    ctx.log(f"conversation: {len(turns)} user turns from {path.name}")
    lm = _load(ctx)
    _check_cache(ctx, lm, S, L, "experiment.cache")
    session = StreamingChat(lm.model, lm.tokenizer, S, L - S, int(e.max_new_tokens))
    rss_start = rss_mb()
    rounds: list[Round] = []
    t0 = time.time()
    for user in tqdm(turns, desc="chat", unit="round", mininterval=5):
        r = session.turn(user)
        rounds.append(r)
        if r.round == 1 or r.round % 10 == 0 or r.round == len(turns):
            ctx.log(f"round {r.round}: {r.tokens_in} in, {r.tokens_out} out, {r.tokens_total:,} streamed, cache "
                    f"{r.cache_len}/{L}, {r.ms_per_token:.1f} ms/token, RSS {r.rss_mb:.0f} MiB")
    wall = time.time() - t0
    rss_end = rss_mb()
    total = session.fed
    if total <= L:
        ctx.log(f"warning: the conversation ({total} tokens) never filled the cache ({L}); use more rounds")
    full = next((r for r in rounds if r.tokens_total > L), rounds[-1])
    lat = [r.ms_per_token for r in rounds if r.tokens_out]
    nonempty = sum(1 for r in rounds if r.reply)
    ctx.metric("chat.rounds", len(rounds), "rounds", "none")
    ctx.metric("chat.rounds_nonempty", nonempty, "rounds", "higher", note="rounds whose reply has visible text")
    ctx.metric("chat.tokens_total", total, "tokens", "none", note="prompt + template + reply tokens streamed")
    ctx.metric("chat.cache_fills", total / L, "x", "none", note=f"tokens streamed / cache size {S}+{L - S}")
    ctx.metric("chat.cache_len.max", max(r.cache_len for r in rounds), "tokens", "none",
               note=f"after each round; must stay <= {L}")
    ctx.metric("chat.cache_len.final", rounds[-1].cache_len, "tokens", "none")
    ctx.metric("chat.cache_overflows", session.overflows, "rounds", "lower",
               note="rounds after which the cache kept > S+R tokens or a forward attended > S+R+new keys")
    ctx.metric("chat.latency_ms_per_token.median", statistics.median(lat) if lat else float("nan"), "ms", "lower",
               note=f"per round: decoding wall time / generated tokens; median over {len(lat)} rounds; "
                    f"{ctx.record.env.get('device_name', lm.device)}, {str(lm.dtype).replace('torch.', '')}")
    ctx.metric("chat.rss_mb.start", rss_start, "MiB", "lower", note="process RSS after loading the model")
    ctx.metric("chat.rss_mb.end", rss_end, "MiB", "lower")
    ctx.metric("chat.rss_mb.growth_after_full", rss_end - full.rss_mb, "MiB", "lower",
               note=f"RSS at the end minus after round {full.round}, the first with more tokens than the cache")
    ctx.metric("chat.kv_cache_mb.max", max(r.kv_cache_mb for r in rounds), "MiB", "lower")
    ctx.metric("chat.template_mismatches", session.template_mismatches, "rounds", "lower",
               note="turns where the chat template did not extend the cached text (fed the difference)")
    ctx.metric("chat.wall_s", wall, "s", "lower")
    rows = [asdict(r) for r in rounds]
    ctx.csv("transcript", rows)
    show = rounds if len(rounds) <= 6 else rounds[:3] + rounds[-3:]
    ctx.table("transcript_excerpt", f"Streaming chat — {lm.name}, cache {S}+{L - S}, greedy, max {e.max_new_tokens} "
              f"new tokens, {len(rounds)} rounds, {total:,} tokens ({total / L:.1f}x the cache)",
              [{"round": r.round, "user": _clip(r.user), "reply": _clip(r.reply), "tokens_total": r.tokens_total,
                "cache_len": r.cache_len, "ms_per_token": r.ms_per_token, "rss_mb": r.rss_mb} for r in show],
              notes=[f"conversation: {path.name}, turns flattened into one conversation stream; one cache for the whole "
                     "conversation, never reset or re-encoded",
                     f"cache overflows: {session.overflows}; non-empty replies: {nonempty}/{len(rounds)}; "
                     f"RSS {rss_start:.0f} -> {rss_end:.0f} MiB; full transcript in transcript.csv"], digits=1)
