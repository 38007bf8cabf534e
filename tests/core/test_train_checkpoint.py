"""`train_causal_lm` resumes from its checkpoint with bit-identical losses."""

from __future__ import annotations

import pytest
import torch

from llm_efficiency_bench.core.checkpoint import Checkpoint
from llm_efficiency_bench.core.tiny import llama_config, train_causal_lm

ARCH = {"hidden": 16, "intermediate": 32, "layers": 1, "heads": 2, "kv_heads": 1}
TRAIN = {"steps": 12, "batch": 2, "seq_len": 16, "lr": 0.01, "seed": 3, "warmup": 2}


class Stop(Exception):
    pass


def _model():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config(ARCH, 50, 64))


def test_resumed_training_matches_uninterrupted(tmp_path):
    ids = torch.randint(0, 50, (400,), generator=torch.Generator().manual_seed(1))
    full_model = _model()
    full = train_causal_lm(full_model, ids, TRAIN, log=lambda s: None)

    ck = Checkpoint(tmp_path, "policy", "key-1")

    def interrupt(step, loss):
        if step == 6:  # killed after step 7; the last checkpoint is after step 6 (every 3 steps)
            raise Stop

    with pytest.raises(Stop):
        train_causal_lm(_model(), ids, TRAIN, log=lambda s: None, on_step=interrupt, checkpoint=ck, every_steps=3)
    assert ck.load() is not None and len(ck.load()["losses"]) == 6
    resumed_model = _model()
    resumed = train_causal_lm(resumed_model, ids, TRAIN, log=lambda s: None, checkpoint=ck, every_steps=3)
    assert resumed == full  # bit-identical, not approximately equal
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert not ck.path.exists()  # cleared once training finished
    other = Checkpoint(tmp_path, "policy", "key-2")  # a checkpoint of other settings is never used
    assert train_causal_lm(_model(), ids, TRAIN, log=lambda s: None, checkpoint=other, every_steps=3) == full


def test_policy_sft_resumes_with_identical_losses(tmp_path, monkeypatch):
    """AdaptiveStep's policy SFT (`policy.train_sft`) checkpoints the same way: a run killed mid-training and
    restarted gives the uninterrupted losses and weights exactly."""
    from llm_efficiency_bench.adaptive_step import policy

    g = torch.Generator().manual_seed(2)
    pairs = [(torch.randint(1, 50, (5,), generator=g).tolist(), torch.randint(1, 50, (4,), generator=g).tolist())
             for _ in range(20)]
    full_model = _model()
    full = policy.train_sft(full_model, pairs, TRAIN, 0, lambda s: None, progress=False)
    ck = Checkpoint(tmp_path, "policy_train", "k")
    real_save = Checkpoint.save
    saves = []

    def save_then_die(self, state):  # killed right after the second checkpoint (after step 6)
        real_save(self, state)
        saves.append(len(state["losses"]))
        if len(saves) == 2:
            raise Stop

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with pytest.raises(Stop):
        policy.train_sft(_model(), pairs, TRAIN, 0, lambda s: None, progress=False, checkpoint=ck, every_steps=3)
    monkeypatch.setattr(Checkpoint, "save", real_save)
    assert saves == [3, 6] and len(ck.load()["losses"]) == 6
    resumed_model = _model()
    resumed = policy.train_sft(resumed_model, pairs, TRAIN, 0, lambda s: None, progress=False, checkpoint=ck,
                               every_steps=3)
    assert resumed == full
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    assert not ck.path.exists()
