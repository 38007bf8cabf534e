"""Generation with a bounded sink cache (`llm_efficiency_bench.streaming_llm.generate`) against transformers' own forward.

The reference is the paper's loop written out by hand: one token per forward through the model's own
`forward` with a `SinkCache` whose `position_ids` place every key within the cache. The session must give
the same tokens (greedy and seeded sampling) with S + R far below prompt + output, keep the cache at S + R,
read a prompt longer than the cache in chunks with the same logits, and score without changing the stream.
"""

from __future__ import annotations

import re

import pytest
import torch
from transformers import DynamicCache

from llm_efficiency_bench.core.paths import REPO_ROOT
from llm_efficiency_bench.streaming_llm.generate import StreamingSession, sink_generate
from llm_efficiency_bench.streaming_llm.rope import rope_of
from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache, SinkCacheUsageError, cache_kwargs
from tests.streaming_llm.models import tiny_llama, tiny_neox
from tests.streaming_llm.test_adapters import MODELS

VOCAB = 101
S, R = 4, 20
GEN = {"llama": tiny_llama, "gpt_neox": tiny_neox, "qwen2": MODELS["qwen2"], "falcon": MODELS["falcon_new_arch"]}

pytestmark = pytest.mark.usefixtures("one_thread")


def _prompt(n: int, seed: int = 3) -> list[int]:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


class Reference:
    """Token-by-token loop through the model's own forward with a SinkCache (window=None: DynamicCache)."""

    def __init__(self, model, n_sink: int, window: int | None):
        self.model = model
        self.cache = DynamicCache() if window is None else SinkCache(n_sink, window, rope_of(model))
        self.n = 0
        self.logits = None

    @torch.no_grad()
    def feed(self, tok: int) -> torch.Tensor:
        kw = {"position_ids": self.cache.position_ids(1)} if isinstance(self.cache, SinkCache) else {}
        out = self.model(torch.tensor([[tok]]), use_cache=True, **cache_kwargs(self.model, self.cache), **kw)
        self.logits = out.logits[0, -1].float()
        self.n += 1
        return self.logits

    def generate(self, prompt: list[int], n: int, temperature: float | None = None, seed: int = 0) -> list[int]:
        for t in prompt:
            self.feed(t)
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(n):
            if temperature is None:
                nxt = int(self.logits.argmax())
            else:
                nxt = int(torch.multinomial(torch.softmax(self.logits / temperature, -1), 1, generator=gen))
            out.append(nxt)
            self.feed(nxt)
        return out


def test_model_generate_with_a_sink_cache_is_refused():
    """transformers' generate never calls position_ids(): it used to run and leave 307 keys, 303 as sinks."""
    model = tiny_llama()
    ids = torch.randint(0, VOCAB, (1, 7))
    with pytest.raises(SinkCacheUsageError, match="position_ids.*sink_generate"):
        model.generate(ids, past_key_values=SinkCache(4, 60, rope_of(model)), max_new_tokens=300, do_sample=False)


def test_forward_that_skips_or_miscounts_positions_is_refused():
    model = tiny_llama()
    cache = SinkCache(2, 8, rope_of(model))
    kw = cache_kwargs(model, cache)
    with torch.no_grad():
        model(torch.tensor([[1, 2]]), position_ids=cache.position_ids(2), use_cache=True, **kw)
        with pytest.raises(SinkCacheUsageError, match="without calling position_ids"):
            model(torch.tensor([[3]]), use_cache=True, **kw)  # second forward, no new positions
        cache.position_ids(2)
        with pytest.raises(SinkCacheUsageError, match=r"position_ids\(2\).*fed 1"):
            model(torch.tensor([[3]]), use_cache=True, **kw)


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(GEN))
def test_generation_equals_token_by_token_sink_cache(name):
    """Prompt 30 + 150 greedy tokens (then 100 sampled) through a 4+20 cache: same tokens as the reference."""
    model = GEN[name]()
    prompt = _prompt(30)
    ref = Reference(model, S, R)
    want = ref.generate(prompt, 150)
    session = StreamingSession(model, S, R, chunk=16)
    got = session.generate(prompt, max_new_tokens=150)
    assert got == want
    assert session.cache_len == S + R and ref.cache.get_seq_length() == S + R
    assert session.keys_max <= S + R + 16  # no forward attended more than the cache + its own tokens
    # Seeded sampling continues the same stream: varied tokens, so a wrong position would show.
    want = ref.generate([], 100, temperature=2.0, seed=5)
    got = session.generate(max_new_tokens=100, do_sample=True, temperature=2.0,
                           generator=torch.Generator().manual_seed(5))
    assert got == want and len(set(got)) > 20
    assert session.seen == 30 + 250 and session.cache_len == S + R
    assert (session.next_logits - ref.logits).abs().max() <= 1e-4


def test_generation_is_sensitive_to_the_policy():
    """Negative control: without sinks (window 0+24) the same sampled continuation differs."""
    model = tiny_llama()
    kw = {"max_new_tokens": 80, "do_sample": True, "temperature": 2.0}
    a = StreamingSession(model, S, R).generate(_prompt(10), generator=torch.Generator().manual_seed(5), **kw)
    b = StreamingSession(model, 0, S + R).generate(_prompt(10), generator=torch.Generator().manual_seed(5), **kw)
    assert a[:10] == b[:10]  # before the first eviction the policies are the same computation
    assert a != b


@pytest.mark.parametrize("name", ["llama", "gpt_neox"])
@pytest.mark.parametrize("n_sink,window", [(4, 20), (0, 24), (0, None)], ids=["sinks", "window", "dense"])
def test_long_prompt_in_chunks_equals_token_by_token(name, n_sink, window):
    """A 100-token prompt (4x the cache) fed 32 tokens per forward, then scored: same logits."""
    model = GEN[name]()
    prompt, cont = _prompt(100), _prompt(12, seed=4)
    ref = Reference(model, n_sink, window)
    for t in prompt:
        ref.feed(t)
    session = StreamingSession(model, n_sink, window, chunk=32)
    logits = session.feed(prompt)
    assert (logits - ref.logits).abs().max() <= 1e-4
    want = []
    for t in cont:
        want.append(torch.log_softmax(ref.logits, -1)[t])
        ref.feed(t)
    assert (session.score(cont) - torch.stack(want)).abs().max() <= 1e-4
    if window is not None:
        assert session.cache_len == n_sink + window


def test_score_leaves_the_stream_unchanged_and_equals_feeding():
    model = tiny_llama()
    session = StreamingSession(model, S, R, chunk=32)
    session.feed(_prompt(90))
    before = session.snapshot()
    cont = _prompt(30, seed=7)
    lp = session.score(cont)
    after = session.snapshot()
    assert after.state.seen == before.state.seen and torch.equal(after.next_logits, before.next_logits)
    for xs, ys in ((before.state.recent_k, after.state.recent_k), (before.state.sink_v, after.state.sink_v)):
        assert all(torch.equal(x, y) for x, y in zip(xs, ys))
    fed = []
    for t in cont:
        fed.append(torch.log_softmax(session.next_logits, -1)[t])
        session.feed([t])
    assert (lp - torch.stack(fed)).abs().max() <= 1e-4
    assert lp.shape == (30,) and bool((lp <= 0).all())


@pytest.mark.parametrize("n_sink,window", [(4, 20), (0, None)], ids=["sinks", "dense"])
def test_score_many_equals_score_one_by_one(n_sink, window):
    """Batched scoring of continuations of different lengths (padded) = each scored alone."""
    model = tiny_llama()
    session = StreamingSession(model, n_sink, window, chunk=8)
    session.feed(_prompt(60))
    conts = [_prompt(k, seed=k) for k in (1, 5, 13, 2)]
    seen = session.seen
    many = session.score_many(conts)
    assert session.seen == seen and session.evaluator.state.recent_k[0].shape[0] == 1
    for got, c in zip(many, conts):
        assert got.shape == (len(c),) and (got - session.score(c)).abs().max() <= 1e-5


def test_stop_conditions_streamer_and_sink_generate():
    model = tiny_llama()
    prompt = torch.tensor([_prompt(30)])
    full = sink_generate(model, prompt, n_sink=S, window=R, max_new_tokens=40)
    assert full.shape == (1, 70) and full[0, :30].tolist() == prompt[0].tolist()
    new = full[0, 30:].tolist()
    eos = new[7]
    stopped = sink_generate(model, prompt, n_sink=S, window=R, max_new_tokens=40, eos_token_id=[eos])
    assert stopped[0, 30:].tolist() == new[:new.index(eos) + 1]  # ends with (and keeps) the first eos

    class Tok:
        def decode(self, ids):
            return " ".join(f"t{i}" for i in ids)

    class Streamer:
        def __init__(self):
            self.got, self.ended = [], False

        def put(self, ids):
            self.got += ids.tolist()

        def end(self):
            self.ended = True

    st = Streamer()
    session = StreamingSession(model, S, R)
    out = session.generate(prompt, max_new_tokens=40, stop_strings=f"t{new[4]}", tokenizer=Tok(), streamer=st)
    assert out == new[:new.index(new[4]) + 1] and st.got == out and st.ended
    assert session.seen == 30 + len(out)  # the output stays in the stream
    with pytest.raises(ValueError, match="batch"):
        sink_generate(model, torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="stream is empty"):
        StreamingSession(model, S, R).generate(max_new_tokens=3)


def test_docs_example_runs():
    """The example in docs/sink_cache.md ("Use the sink cache in your own code") runs as written."""
    text = (REPO_ROOT / "docs" / "sink_cache.md").read_text()
    section = text.split("## Use the sink cache in your own code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/sink_cache.md", "exec"), scope)
    assert scope["session"].cache_len <= 4 + 60
