"""Generation with attention sinks + a rolling window (paper Sec. 3.2) for any model the adapters support.

The one generation loop of the suite (`chat`, `stream_qa` and any user code go through it):

    session = StreamingSession(model, n_sink=4, window=1020)
    session.feed(prompt_ids)                       # any length: exact chunked ingest
    new = session.generate(max_new_tokens=64, eos_token_id=tok.eos_token_id)   # stays in the stream
    logp = session.score(continuation_ids)          # log-probs given the stream, stream unchanged

or in one call, with `generate`-like arguments, `sink_generate(model, input_ids, n_sink=4, window=1020,
max_new_tokens=64)`.

The stream lives in `engine.ChunkedEvaluator`'s state: the pre-RoPE keys and values of the S sinks and the R
most recent tokens per layer. Every forward, a long prompt in chunks or one generated token, rotates them
into the cache frame of the paper: a recent key at its true distance from the query, sink i at the fixed
cache offset min(t, S + R) - i. So the KV cache holds at most S + R tokens however long the stream runs, a
prompt longer than the cache is read in chunks with the exact sink + band masks (no eviction inside a
forward is ever approximated), and generation equals a token-by-token loop through the model's own forward
with `SinkCache` (tests/streaming_llm/test_generate.py).

Policies: `window=None` is dense attention (no eviction): positions keep growing past the model's trained
context (RoPE extrapolates, quality collapses, as the paper's dense baseline does) and memory grows by one
token's KV per token until the machine runs out; a warning says when the context is passed. `n_sink=0` is
window attention.

transformers' `model.generate` is not used: it assigns positions from its own growing `cache_position`
and would prefill a prompt longer than the cache in one forward, both wrong for a sink cache (`SinkCache`
refuses such forwards). See docs/sink_cache.md for why there is no `custom_generate` folder.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from llm_efficiency_bench.streaming_llm.adapters import adapter_for
from llm_efficiency_bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator, StreamState

CHUNK = 512  # tokens per forward when feeding long inputs (the evaluator's default chunk)


@dataclass
class Snapshot:
    """Where a stream stands: the evaluator's state (tensors are never modified in place) and the logits."""

    state: StreamState
    next_logits: torch.Tensor | None


def _as_ids(ids: Any) -> list[int]:
    """Token ids as a flat list from a list, a (T,) tensor or a (1, T) tensor."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() == 2:
            if ids.shape[0] != 1:
                raise ValueError(f"StreamingSession streams one sequence; got a batch of {ids.shape[0]}")
            ids = ids[0]
        if ids.dim() != 1:
            raise ValueError(f"token ids must be (T,) or (1, T), got shape {tuple(ids.shape)}")
        return [int(i) for i in ids.tolist()]
    return [int(i) for i in ids]


class StreamingSession:
    """One token stream through an S + R attention-sink cache (S = 0: window; window=None: dense).

    Args:
        model: a transformers causal LM of a type `adapters.adapter_for` supports (Llama, Mistral, Qwen2,
            GPT-NeoX, Falcon with RoPE, MPT).
        n_sink: S, initial tokens whose KV is kept forever.
        window: R, most recent tokens kept; None keeps everything (dense).
        chunk: most tokens per forward when feeding long inputs.
    """

    def __init__(self, model: Any, n_sink: int = 4, window: int | None = 1020, chunk: int = CHUNK):
        if n_sink < 0 or (window is not None and window < 1) or chunk < 1:
            raise ValueError(f"StreamingSession needs n_sink >= 0, window >= 1 (or None) and chunk >= 1 "
                             f"(got n_sink={n_sink}, window={window}, chunk={chunk})")
        self.model = model
        self.adapter = adapter_for(model)
        self.policy = CachePolicy(n_sink, window)
        self.evaluator = ChunkedEvaluator(self.adapter, self.policy)
        self.chunk = int(chunk)
        self.device = next(model.parameters()).device
        self.context = getattr(model.config, "max_position_embeddings", None)
        self.next_logits: torch.Tensor | None = None  # (V,) fp32 logits after the last token of the stream
        self.keys_max = 0  # most keys any forward attended to (<= S + R + tokens in that forward)
        self._warned = False

    # ------------------------------------------------------------------------------------------ state
    @property
    def seen(self) -> int:
        """Tokens streamed so far."""
        return self.evaluator.state.seen

    @property
    def cache_len(self) -> int:
        """Tokens whose KV the cache keeps (<= S + R for a bounded policy)."""
        st = self.evaluator.state
        return st.sink_k[0].shape[-2] + st.recent_k[0].shape[-2] if st.recent_k else 0

    def nbytes(self) -> int:
        """Bytes of the cached keys and values, all layers."""
        return self.evaluator.state.nbytes()

    def snapshot(self) -> Snapshot:
        """The stream as it is now; `restore` returns to it (cheap: tensors are shared, never modified)."""
        st = self.evaluator.state
        return Snapshot(StreamState(st.seen, list(st.sink_k), list(st.sink_v), list(st.recent_k),
                                    list(st.recent_v)), self.next_logits)

    def restore(self, snap: Snapshot) -> None:
        st = snap.state
        self.evaluator.state = StreamState(st.seen, list(st.sink_k), list(st.sink_v), list(st.recent_k),
                                           list(st.recent_v))
        self.next_logits = snap.next_logits

    @contextlib.contextmanager
    def branch(self) -> Iterator["StreamingSession"]:
        """`with session.branch(): ...` feeds or generates on a copy; the stream is restored afterwards."""
        snap = self.snapshot()
        try:
            yield self
        finally:
            self.restore(snap)

    # ------------------------------------------------------------------------------------------ feed
    @torch.inference_mode()
    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Stream ids in chunks; return the hidden states (T, d) of all of them (before the LM head)."""
        out = []
        for s in range(0, len(ids), self.chunk):
            x = torch.tensor([ids[s:s + self.chunk]], device=self.device)  # (1, C)
            self.keys_max = max(self.keys_max, self.cache_len + x.shape[1])
            out.append(self.evaluator.forward_chunk(x)[0])  # (C, d)
        if self.policy.window is None and self.context and self.seen > self.context and not self._warned:
            self._warned = True
            warnings.warn(f"dense attention past the model's trained context ({self.seen} > {self.context} "
                          "tokens): positions beyond training, expect the output to degrade", stacklevel=4)
        return out[0] if len(out) == 1 else torch.cat(out)

    def feed(self, ids: Any) -> torch.Tensor:
        """Append tokens to the stream; returns the next-token logits after the last one, (V,) fp32.

        Any length: a long input is read `chunk` tokens per forward through the exact sink + band masks.
        """
        ids = _as_ids(ids)
        if not ids:
            raise ValueError("feed: no tokens")
        h = self._forward(ids)
        with torch.inference_mode():
            self.next_logits = self.adapter.logits(h[-1:])[0].float()
        return self.next_logits

    # ----------------------------------------------------------------------------------------- score
    @torch.inference_mode()
    def score(self, continuation: Any) -> torch.Tensor:
        """Log-probability of each continuation token given the stream so far, (T,) fp32; the stream is
        left exactly as it was (nothing of the continuation stays in the cache)."""
        ids = _as_ids(continuation)
        if not ids:
            raise ValueError("score: empty continuation")
        if self.next_logits is None:
            raise ValueError("score: the stream is empty; feed a prompt (at least one token) first")
        first = torch.log_softmax(self.next_logits, -1)[ids[0]]
        if len(ids) == 1:
            return first[None]
        with self.branch():
            h = self._forward(ids[:-1])
            logits = self.adapter.logits(h).float()  # (T-1, V)
        rest = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:], device=logits.device)[:, None])[:, 0]
        return torch.cat([first[None], rest])

    @torch.inference_mode()
    def score_many(self, continuations: Sequence[Any]) -> list[torch.Tensor]:
        """`score` of several continuations of the same stream, in one batched forward per chunk.

        The stream's state is broadcast over the batch, the continuations are right-padded (causal
        attention: padding after a token never changes its logits), so the model's weights are read once
        for all of them (a forward of a few tokens costs about as much as one token on a CPU).
        """
        conts = [_as_ids(c) for c in continuations]
        if not conts or any(not c for c in conts):
            raise ValueError("score_many: needs at least one continuation, none empty")
        if self.next_logits is None:
            raise ValueError("score_many: the stream is empty; feed a prompt (at least one token) first")
        first = torch.log_softmax(self.next_logits, -1)
        longest = max(len(c) for c in conts)
        if longest == 1:
            return [first[c[0]][None] for c in conts]
        b = len(conts)
        x = torch.tensor([c[:-1] + [c[0]] * (longest - len(c)) for c in conts], device=self.device)  # (B, T-1)
        with self.branch():
            st = self.evaluator.state
            self.evaluator.state = StreamState(  # (1, H, T, D) views broadcast to (B, H, T, D)
                st.seen, *([t.expand(b, -1, -1, -1) for t in ts] for ts in (st.sink_k, st.sink_v, st.recent_k,
                                                                            st.recent_v)))
            h = torch.cat([self.evaluator.forward_chunk(x[:, i:i + self.chunk])
                           for i in range(0, x.shape[1], self.chunk)], dim=1)  # (B, T-1, d)
        logp = torch.log_softmax(self.adapter.logits(h).float(), -1)  # (B, T-1, V)
        out = []
        for k, c in enumerate(conts):
            rest = logp[k, :len(c) - 1].gather(-1, torch.tensor(c[1:], device=logp.device)[:, None])[:, 0]
            out.append(torch.cat([first[c[0]][None], rest]))
        return out

    # -------------------------------------------------------------------------------------- generate
    def generate(self, prompt_ids: Any = None, max_new_tokens: int = 20, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, eos_token_id: int | Sequence[int] | None = None,
                 stop_strings: str | Sequence[str] | None = None, tokenizer: Any = None, streamer: Any = None,
                 generator: torch.Generator | None = None) -> list[int]:
        """Feed `prompt_ids` (optional), then generate up to `max_new_tokens` tokens into the stream.

        Every generated token, the last one included, is fed back, so the stream is prompt + output and
        the next call continues the conversation. Positions are the cache's own (module docstring).

        Args:
            do_sample: sample (with `temperature`, nucleus `top_p`, `generator`) instead of greedy argmax.
            eos_token_id: id(s) that end generation (the id is kept in the output and the stream).
            stop_strings: end once the decoded output contains one of them (needs `tokenizer`).
            streamer: a transformers streamer (`put(ids)` per token, `end()`), e.g. `TextStreamer`.

        Returns:
            The generated token ids.
        """
        if prompt_ids is not None:
            self.feed(prompt_ids)
        if self.next_logits is None:
            raise ValueError("generate: the stream is empty; pass prompt_ids or feed tokens first")
        if do_sample and temperature <= 0:
            raise ValueError(f"generate: temperature must be > 0 when sampling (got {temperature})")
        if not 0 < top_p <= 1:
            raise ValueError(f"generate: top_p must be in (0, 1] (got {top_p})")
        stops = {int(eos_token_id)} if isinstance(eos_token_id, int) else {int(i) for i in eos_token_id or ()}
        strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings or ())
        if strings and tokenizer is None:
            raise ValueError("generate: stop_strings need the tokenizer (tokenizer=...)")
        out: list[int] = []
        for _ in range(int(max_new_tokens)):
            nxt = self._choose(self.next_logits, do_sample, temperature, top_p, generator)
            out.append(nxt)
            if streamer is not None:
                streamer.put(torch.tensor([nxt]))
            self.feed([nxt])  # the output stays in the stream
            if nxt in stops or (strings and any(s in tokenizer.decode(out) for s in strings)):
                break
        if streamer is not None:
            streamer.end()
        return out

    @staticmethod
    def _choose(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float,
                generator: torch.Generator | None) -> int:
        if not do_sample:
            return int(logits.argmax())
        probs = torch.softmax(logits / temperature, -1)
        if top_p < 1:  # nucleus: the smallest set of top tokens whose mass reaches top_p
            p, idx = probs.sort(descending=True)
            keep = p.cumsum(-1) - p < top_p
            probs = torch.zeros_like(probs).scatter_(0, idx[keep], p[keep])
        return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def sink_generate(model: Any, input_ids: Any, n_sink: int = 4, window: int | None = 1020,
                  max_new_tokens: int = 20, chunk: int = CHUNK, **kwargs: Any) -> torch.Tensor:
    """`model.generate`-like call with an S + R sink cache: returns (1, T + new) ids, prompt included.

    Args:
        input_ids: (1, T) or (T,) prompt (one sequence; batches are not supported).
        kwargs: `StreamingSession.generate` options (do_sample, temperature, top_p, eos_token_id,
            stop_strings, tokenizer, streamer, generator). An `attention_mask` must be all ones.
    """
    mask = kwargs.pop("attention_mask", None)
    if mask is not None and not bool(torch.as_tensor(mask).bool().all()):
        raise ValueError("sink_generate: padded inputs are not supported (attention_mask has zeros)")
    prompt = _as_ids(input_ids)
    session = StreamingSession(model, n_sink, window, chunk)
    new = session.generate(prompt, max_new_tokens=max_new_tokens, **kwargs)
    device = input_ids.device if isinstance(input_ids, torch.Tensor) else session.device
    return torch.tensor([prompt + new], device=device)
