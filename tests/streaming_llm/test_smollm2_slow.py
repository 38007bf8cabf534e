"""SmolLM2-135M (real attention sinks): chunked evaluation equals token-by-token (fp32, <= 1e-4)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bench.core.paths import REPO_ROOT
from tests.streaming_llm.test_engine import chunked, token_by_token

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from bench.core.models import load_model

    return load_model(OmegaConf.load(REPO_ROOT / "configs/model/smollm2_135m.yaml"), dtype="float32")


def test_smollm2_chunked_equals_token_by_token(smollm2, data_dir):
    text = (data_dir / "gutenberg" / "moby_dick.txt").read_text(encoding="utf-8-sig")[:20000]
    ids = torch.tensor(smollm2.tokenizer(text).input_ids[:601])
    ref = token_by_token(smollm2.model, ids, 4, 124, rebase_every=300)
    got = chunked(smollm2.model, ids, 4, 124, 256)
    assert (got - ref).abs().max().item() <= 1e-4
    window = chunked(smollm2.model, ids, 0, 128, 256)
    # SmolLM2 has real sinks: dropping them must hurt once the window has evicted token 0.
    assert window[200:].mean() > got[200:].mean() + 0.05
