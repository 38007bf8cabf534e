"""`generation.sample`'s fast paths against its reference paths (fp32, tiny random Llama): the shared prefill
(identical prompts run once, cache gathered) and batch compaction (finished rows leave) change no sample;
and the Best-of-N bootstrap interval has the binomial width."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llm_efficiency_bench.adaptive_step.generation import sample


def _model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def test_shared_prefill_matches_per_row_prefill():
    m = _model()
    prompts = [[1, 2, 3, 4]] * 5 + [[5, 6]] * 5 + [[7, 8, 9]] * 5 + [[3]]  # K rollouts per prefix, ragged
    a = sample(m, prompts, 24, 0, 1.0, torch.Generator().manual_seed(3))
    b = sample(m, prompts, 24, 0, 1.0, torch.Generator().manual_seed(3), share_prefill=False)
    assert [x.ids for x in a] == [x.ids for x in b]
    assert [x.finished for x in a] == [x.finished for x in b]
    for x, y in zip(a, b):
        assert torch.allclose(torch.tensor(x.conf), torch.tensor(y.conf), atol=1e-5)
    assert len({tuple(x.ids) for x in a[:5]}) > 1  # the rows of one prompt really are different samples


def test_shared_prefill_greedy_rows_agree():
    m = _model()
    out = sample(m, [[1, 2, 3]] * 3 + [[4, 5]], 10, 0, greedy=True)
    assert out[0].ids == out[1].ids == out[2].ids
    assert out[3].ids == sample(m, [[4, 5]], 10, 0, greedy=True)[0].ids


@pytest.mark.e2e  # samples a whole batch twice (seconds)
def test_compaction_changes_no_sample():
    """Dropping finished rows from the batch gives the same tokens as running them to the end."""
    m = _model()
    prompts = [[1, 2, 3, 4]] * 6 + [[5, 6]] * 6
    runs = [sample(m, prompts, 30, 7, 1.0, torch.Generator().manual_seed(5), compact=c) for c in (True, False)]
    assert [x.ids for x in runs[0]] == [x.ids for x in runs[1]]
    assert [x.finished for x in runs[0]] == [x.finished for x in runs[1]]
    assert any(x.finished for x in runs[0]) and not all(x.finished for x in runs[0])  # rows really left early


def test_bootstrap_interval_matches_the_binomial_width():
    """200 questions at 50%: the percentile bootstrap's 95% interval is ~ +-1.96 sqrt(p(1-p)/n) = +-6.9 points."""
    import numpy as np

    from llm_efficiency_bench.adaptive_step.bon import bootstrap_ci

    per_q = 100 * (np.arange(200) % 2).astype(float)
    lo, hi, se = bootstrap_ci(per_q, resamples=4000, seed=1)
    assert lo < 50 < hi
    assert abs((hi - lo) / 2 - 6.93) < 0.6 and abs(se - 3.54) < 0.3
