"""Cache keys of the pipeline's stages are pinned: a key changes only when it is meant to.

The pinned values: the keys of the stage inputs as they are, including `"sampler": "icdf"` in the sample
and label stages (an inverse-CDF draw per row, so that finished rows can leave the batch; entries drawn
with `torch.multinomial` over the batch must not be reused) and the `cpu` policy's 1400 SFT steps (65%
greedy, inside the 30-70% band).

A changed key silently rebuilds a whole cached pipeline (the `cpu` one takes most of an hour), so a change
must be deliberate: update the values here and say why.
"""

from __future__ import annotations

import pytest

from llm_efficiency_bench.adaptive_step.labels import labels_key_obj
from llm_efficiency_bench.adaptive_step.pipeline import labels_division_key
from llm_efficiency_bench.adaptive_step.policy import policy_key_obj
from llm_efficiency_bench.adaptive_step.samples import division_key_obj, samples_key_obj
from llm_efficiency_bench.core.cache import config_key
from tests.conftest import compose

OLD_KEYS = {
    "smoke": {"policy": "34fcd8408ed7f6b7", "samples_prm": "6604e431104516f8", "samples_test": "551f602dc01bf1e2",
              "division": "2da875fc846808a6", "labels_division": "a476d2c2bd8a20d4",
              "labels_confidence": "2ae665a050517fc8", "labels_newline": "b77d6dcec091124d"},
    "cpu": {"policy": "9265e0189f9c8aca", "samples_prm": "1a7225ad1e770377", "samples_test": "6cbe51e4cb7c9690",
            "division": "6b7e325087c4b15e", "labels_confidence": "7236b93daac0c042"},
}


@pytest.mark.parametrize("profile", sorted(OLD_KEYS))
def test_stage_keys_equal_those_of_the_code_before_the_split(profile):
    cfg = compose("adaptive_step", ["experiment=bon", f"profile={profile}"])
    keys = {"policy": config_key(policy_key_obj(cfg))}
    for split in ("prm", "test"):
        keys[f"samples_{split}"] = config_key(samples_key_obj(cfg, keys["policy"], split))
    samples = [keys["samples_prm"], keys["samples_test"]]
    keys["division"] = config_key(division_key_obj(cfg, samples))
    keys["labels_division"] = labels_division_key(cfg, samples)
    for split in ("confidence", "newline"):
        keys[f"labels_{split}"] = config_key(labels_key_obj(cfg, keys["labels_division"], split))
    want = OLD_KEYS[profile]
    assert {k: keys[k] for k in want} == want


def test_task_group_keeps_the_task_block_of_the_old_overrides():
    """`task=gsm8k` gives the same `task` block (hence keys) as the `task.name=gsm8k` override."""
    from omegaconf import OmegaConf

    new = OmegaConf.to_container(compose("adaptive_step", ["experiment=bon", "profile=smoke", "task=gsm8k"]).task)
    base = OmegaConf.to_container(compose("adaptive_step", ["experiment=bon", "profile=smoke"]).task)
    assert new == {**base, "name": "gsm8k"}
    assert base == {"name": "synthetic", "seed": 0,
                    "difficulty": {"min_ops": 2, "max_ops": 3, "max_start": 20, "max_add": 20, "max_mul": 3}}
