"""An attention-sink KV cache for transformers 5.x (its own `SinkCache` was removed in v5).

Policy (paper Sec. 3.2, reference `StartRecentKVCache`): after every forward keep the first S tokens
("attention sinks") and the most recent R tokens of every layer's KV. Positions are assigned *within the
cache*: the query of a new token sits at position kv_len, a recent key at its true distance from the query,
and sink i at position i (distance kv_len - i).

Implementation (cheap per step, exact): transformers rotates keys before `Cache.update`, so the cache
cannot un-rotate them for free. Instead the caller takes positions from `SinkCache.position_ids(n)`:
recent keys stay rotated at the positions they were given (relative distances are then already true), and
only the S sink keys are re-rotated each step by `position - kv_len` so that they sit at distance
kv_len - i. Once the cache is full, positions are re-based every `rebase_every` tokens (one rotation of the
recent keys) so that RoPE angles stay below capacity + rebase_every: fp32 angles p * inv_freq lose
precision in proportion to p, and with a 16K re-base the token-by-token NLL drifts from the exact
chunked path by up to 4e-4 after 3,000 tokens. With 512 the positions are as small as the
chunked path's own (R + chunk), and the cost is one rotation of R keys per layer every 512 tokens. For
models without RoPE (ALiBi, e.g. MPT) pass `rope=None`: the bias is built from cache indices, which already
are cache-relative (Falcon with `alibi=True` likewise; `rope_of` returns None for it).

Use:
    cache = SinkCache(n_sink=4, window=1020, rope=rope_of(model))
    pos = cache.position_ids(ids.shape[1])
    out = model(ids, position_ids=pos, use_cache=True, **cache_kwargs(model, cache))

Feeding several tokens in one call is allowed only while no eviction happens inside the call (prefill of
a prompt that fits); past that, feed one token per call, as the paper does. `llm_efficiency_bench.streaming_llm.engine`
gives the same numbers as this cache for long inputs, in parallel.

Every forward must take its positions from `position_ids(n)`: a forward that did not (transformers'
`model.generate`, which assigns its own growing `cache_position`, or a loop that forgets the call) raises
`SinkCacheUsageError` instead of silently attending at wrong positions. To generate text with sinks + a
rolling window, use `llm_efficiency_bench.streaming_llm.generate` (`sink_generate`, `StreamingSession`).
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from llm_efficiency_bench.streaming_llm.rope import Rope

if TYPE_CHECKING:
    from llm_efficiency_bench.streaming_llm.engine import StreamState

REBASE_EVERY = 512  # tokens between re-bases once the cache is full (see the module docstring)


class SinkCacheUsageError(RuntimeError):
    """A forward updated the cache without taking its positions from `SinkCache.position_ids`."""


def _usage_error(why: str) -> SinkCacheUsageError:
    return SinkCacheUsageError(
        f"SinkCache: {why}. Every forward must take position_ids from cache.position_ids(n) (model.generate "
        "does not: it would give every new token wrong positions); to generate with sinks + a rolling window "
        "use llm_efficiency_bench.streaming_llm.generate.sink_generate or StreamingSession")


def cache_kwargs(model, cache: Cache | None) -> dict:
    """The keyword argument that hands a KV cache to `model(...)`.

    transformers 5.24 renamed `past_key_values` to `cache` (the old name warns and goes away in 5.40);
    earlier 5.x releases only know `past_key_values` and would silently drop an unknown `cache=`. The name
    is read from the forward's signature, so both work.
    """
    return {_cache_arg(type(model)): cache}


@functools.lru_cache(maxsize=None)
def _cache_arg(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters  # follows deprecate_kwarg's functools.wraps
    return "cache" if "cache" in params else "past_key_values"


class SinkLayer(CacheLayerMixin):
    """One layer's sinks + recent window. Keys/values: (B, H_kv, T, D)."""

    is_sliding = False

    def __init__(self, parent: "SinkCache"):
        super().__init__()
        self.parent = parent
        self.sink_k = self.sink_v = self.recent_k = self.recent_v = None
        self.step = -1  # the parent's `step` of the last forward that updated this layer

    def lazy_initialization(self, key_states, value_states):
        empty = key_states[:, :, :0]
        self.sink_k, self.sink_v = empty.clone(), value_states[:, :, :0].clone()
        self.recent_k, self.recent_v = empty.clone(), value_states[:, :, :0].clone()
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        p = self.parent
        if p.step == 0 or self.step == p.step:
            raise _usage_error("a forward updated the cache without calling position_ids(n) first")
        if key_states.shape[-2] != p._pending:
            raise _usage_error(f"position_ids({p._pending}) was called but the forward fed "
                               f"{key_states.shape[-2]} tokens")
        self.step = p.step
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        seen = p.seen  # tokens before this forward
        window = p.window
        # 1. Evict what the previous forward left over: keep the most recent `window` (paper: after forward).
        if self.recent_k.shape[-2] > window:
            self.recent_k = self.recent_k[:, :, -window:]
            self.recent_v = self.recent_v[:, :, -window:]
        # 2. New tokens: stream indices < S become sinks (rotated at their true positions 0..S-1).
        n_new_sink = max(0, min(p.n_sink - seen, key_states.shape[-2]))
        if n_new_sink:
            self.sink_k = torch.cat([self.sink_k, key_states[:, :, :n_new_sink]], dim=-2)
            self.sink_v = torch.cat([self.sink_v, value_states[:, :, :n_new_sink]], dim=-2)
        kv_len = self.sink_k.shape[-2] - n_new_sink + self.recent_k.shape[-2]  # cached before this call
        self.recent_k = torch.cat([self.recent_k, key_states[:, :, n_new_sink:]], dim=-2)
        self.recent_v = torch.cat([self.recent_v, value_states[:, :, n_new_sink:]], dim=-2)
        # 3. Sinks at distance kv_len - i from the query: rotate by (query position - kv_len).
        delta = p.current_position - kv_len
        sinks = p.rope.shift(self.sink_k, delta) if (p.rope is not None and delta) else self.sink_k
        return torch.cat([sinks, self.recent_k], dim=-2), torch.cat([self.sink_v, self.recent_v], dim=-2)

    def cached_length(self) -> int:
        """Tokens kept after the pending eviction."""
        if not self.is_initialized:
            return 0
        return self.sink_k.shape[-2] + min(self.recent_k.shape[-2], self.parent.window)

    def get_seq_length(self) -> int:
        return self.cached_length()

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.cached_length() + query_length, 0

    def get_max_length(self) -> int:
        return self.parent.capacity + 1

    def reset(self) -> None:
        self.sink_k = self.sink_v = self.recent_k = self.recent_v = None
        self.is_initialized = False
        self.step = -1

    def nbytes(self) -> int:
        if not self.is_initialized:
            return 0
        return sum(t.numel() * t.element_size() for t in (self.sink_k, self.sink_v, self.recent_k, self.recent_v))


class SinkCache(Cache):
    """Attention sinks + rolling window KV cache (S + R); S = 0 gives window attention.

    Args:
        n_sink: S, initial tokens kept forever.
        window: R, most recent tokens kept.
        rope: the model's RoPE (`rope.rope_of(model)`), or None for ALiBi / no-position models.
        rebase_every: once the cache is full, re-base positions every this many tokens (query positions
            then stay below n_sink + window + rebase_every).
    """

    def __init__(self, n_sink: int, window: int, rope: Rope | None, rebase_every: int = REBASE_EVERY):
        if n_sink < 0 or window < 1:
            raise ValueError(f"SinkCache needs n_sink >= 0 and window >= 1 (got {n_sink}+{window})")
        if rebase_every < 1:
            raise ValueError(f"SinkCache needs rebase_every >= 1 (got {rebase_every})")
        self.n_sink, self.window, self.capacity = n_sink, window, n_sink + window
        self.rope = rope
        self.rebase_every = rebase_every
        self.seen = 0  # tokens of finished forwards
        self.base = 0  # stream index that has position 0 in the current frame
        self._pending = 0
        self.step = 0  # forwards announced by `position_ids`; each layer must see each step exactly once
        super().__init__(layer_class_to_replicate=lambda: SinkLayer(self))

    @property
    def current_position(self) -> int:
        """Position of the first token of the current forward."""
        return self.seen - self.base

    def position_ids(self, n_new: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Positions for the next `n_new` tokens, (1, n_new); must be called before every forward."""
        self.seen += self._pending
        if n_new > 1 and self.seen + n_new - 1 > self.capacity:
            raise ValueError(
                f"SinkCache: {n_new} tokens at once would evict inside one forward ({self.seen} seen, capacity "
                f"{self.capacity}); feed them one at a time or use the chunked evaluator"
            )
        self._pending = n_new
        self.step += 1
        if self.rope is not None and self.seen > self.capacity \
                and self.current_position >= self.capacity + self.rebase_every:
            self._rebase()
        start = self.current_position
        return torch.arange(start, start + n_new, device=device)[None]

    def _rebase(self) -> None:
        # After this step's eviction the oldest recent token is seen - window; put it at position n_sink.
        new_base = self.seen - self.window - self.n_sink
        shift = new_base - self.base
        for layer in self.layers:
            if layer.is_initialized:
                layer.recent_k = self.rope.shift(layer.recent_k, -shift)
        self.base = new_base

    def nbytes(self) -> int:
        """Bytes held by keys and values of all layers."""
        return sum(layer.nbytes() for layer in self.layers)

    @classmethod
    def from_stream_state(cls, state: "StreamState", rope: Rope | None, n_sink: int, window: int,
                          rebase_every: int = REBASE_EVERY, base: int | None = None) -> "SinkCache":
        """A cache that continues, token by token, a stream the chunked evaluator has read so far.

        The chunked evaluator keeps pre-RoPE keys; here they are rotated into a cache frame. By default the
        frame is the one right after a re-base (oldest recent key at position n_sink), a state the cache also
        reaches by itself, so a long stream can be continued without feeding every earlier token.

        Args:
            state: `ChunkedEvaluator.state` of the same model and S+R policy.
            base: stream index at position 0 instead (0: keys at their true stream positions).
        """
        cache = cls(n_sink, window, rope, rebase_every)
        if not state.recent_k:
            return cache
        s, r = state.sink_k[0].shape[-2], state.recent_k[0].shape[-2]
        cache.seen = state.seen
        cache.base = state.seen - r - s if base is None else base
        first = state.seen - r - cache.base  # position of the oldest recent key

        def rotate(x: torch.Tensor, start: int) -> torch.Tensor:  # x (B, Hkv, T, D), pre-RoPE
            if rope is None:
                return x.clone()
            return rope.apply(x, torch.arange(start, start + x.shape[-2], device=x.device))

        for sk, sv, rk, rv in zip(state.sink_k, state.sink_v, state.recent_k, state.recent_v):
            layer = SinkLayer(cache)
            layer.lazy_initialization(rk, rv)
            layer.sink_k, layer.sink_v = rotate(sk, 0), sv.clone()  # sinks at their true positions 0..s-1
            layer.recent_k, layer.recent_v = rotate(rk, first), rv.clone()
            cache.layers.append(layer)
        return cache
