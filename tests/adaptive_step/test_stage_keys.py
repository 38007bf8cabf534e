"""Cache keys of the pipeline's stages are pinned: entries built before the port to the core cache stay valid.

The expected keys were computed by the code before the split (`pipeline.Stage`, commit 8126739): the smoke
values from its `bon` smoke record (`extra.stage_keys`) and cache folders, the cpu values from the folder
names of a `cpu` cache built by that code. A changed key silently rebuilds a whole cached pipeline (the
`cpu` one takes most of an hour), so a change must be deliberate: update the values here and say why.
"""

from __future__ import annotations

import pytest

from bench.adaptive_step.labels import labels_key_obj
from bench.adaptive_step.pipeline import labels_division_key
from bench.adaptive_step.policy import policy_key_obj
from bench.adaptive_step.samples import division_key_obj, samples_key_obj
from bench.core.cache import config_key
from tests.conftest import compose

OLD_KEYS = {
    "smoke": {"policy": "34fcd8408ed7f6b7", "samples_prm": "7d3e82dd2ba555a0", "samples_test": "dac24a9baaec525a",
              "division": "d3d9e8f9175ab4eb", "labels_division": "3b0433a0af6c94c2",
              "labels_confidence": "6d8c6a2e3dc27fb2", "labels_newline": "0efb3a4c5fe86b2b"},
    "cpu": {"policy": "c5ae505d86a4814d", "samples_prm": "21ade964972c4f1c", "samples_test": "c67421eb144a1b03",
            "division": "56965e49a34e3f24", "labels_confidence": "a132072a581416bf"},
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
    """`task=gsm8k` gives the same `task` block (hence keys) as the old `task.name=gsm8k` override did."""
    from omegaconf import OmegaConf

    new = OmegaConf.to_container(compose("adaptive_step", ["experiment=bon", "profile=smoke", "task=gsm8k"]).task)
    base = OmegaConf.to_container(compose("adaptive_step", ["experiment=bon", "profile=smoke"]).task)
    assert new == {**base, "name": "gsm8k"}
    assert base == {"name": "synthetic", "seed": 0,
                    "difficulty": {"min_ops": 2, "max_ops": 3, "max_start": 20, "max_add": 20, "max_mul": 3}}
