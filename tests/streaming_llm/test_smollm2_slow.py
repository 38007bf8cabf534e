"""SmolLM2-135M (real attention sinks): chunked evaluation equals token-by-token (fp32, <= 1e-4), also
across SinkCache re-bases, and not when positions are left to grow to 64K."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from llm_efficiency_bench.core.paths import CONFIG_DIR, REPO_ROOT
from tests.streaming_llm.test_engine import chunked, token_by_token
from tests.streaming_llm.test_sink_cache_precision import _token_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from llm_efficiency_bench.core.models import load_model

    return load_model(OmegaConf.load(CONFIG_DIR / "model/smollm2_135m.yaml"), dtype="float32")


def test_smollm2_chunked_equals_token_by_token(smollm2, data_dir):
    text = (data_dir / "gutenberg" / "moby_dick.txt").read_text(encoding="utf-8-sig")[:20000]
    ids = torch.tensor(smollm2.tokenizer(text).input_ids[:601])
    ref = token_by_token(smollm2.model, ids, 4, 124, rebase_every=300)
    got = chunked(smollm2.model, ids, 4, 124, 256)
    assert (got - ref).abs().max().item() <= 1e-4
    window = chunked(smollm2.model, ids, 0, 128, 256)
    # SmolLM2 has real sinks: dropping them must hurt once the window has evicted token 0.
    assert window[200:].mean() > got[200:].mean() + 0.05


def test_smollm2_sink_cache_rebases_keep_it_exact(smollm2, data_dir):
    """Cache 4+124 over 1,200 tokens of a book with the default re-base (every 512 tokens once full: at
    640 and 1,152): the token path equals the chunked path. A control continues from token 512 with keys at
    ~64K positions and no re-base (a long stream without re-basing): it drifts past 1e-4."""
    import copy

    from llm_efficiency_bench.streaming_llm.adapters import adapter_for
    from llm_efficiency_bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator
    from llm_efficiency_bench.streaming_llm.rope import rope_of
    from llm_efficiency_bench.streaming_llm.sink_cache import SinkCache

    text = (data_dir / "gutenberg" / "moby_dick.txt").read_text(encoding="utf-8-sig")[:40000]
    ids = torch.tensor(smollm2.tokenizer(text).input_ids[:1201])
    model = smollm2.model
    ref = token_by_token(model, ids, 4, 124)  # default rebase_every
    ev = ChunkedEvaluator(adapter_for(model), CachePolicy(4, 124))
    parts, state = [], None
    x, y = ids[:-1], ids[1:]
    for s in range(0, x.numel(), 256):
        parts.append(ev.nll(x[s:s + 256], y[s:s + 256]))
        if s + 256 == 512:
            state = copy.deepcopy(ev.state)
    got = torch.cat(parts)
    assert (got - ref).abs().max().item() <= 1e-4
    far = SinkCache.from_stream_state(state, rope_of(model), 4, 124, rebase_every=10**9, base=512 - 65536)
    drift = _token_path(model, far, ids, 512, 100) - got[512:612]
    assert drift.abs().max().item() > 1e-4
