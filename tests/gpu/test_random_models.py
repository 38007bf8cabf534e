"""Random-weight paper architectures (CPU, CI): published parameter counts on the meta device, seeded
builds, speed-only labelling, and quality experiments refusing them."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.models import load_model
from llm_efficiency_bench.core.paths import CONFIG_DIR, REPO_ROOT
from llm_efficiency_bench.core.random_models import SPEED_ONLY_NOTE, ByteTokenizer, build, parameter_count, speed_note
from tests.conftest import compose

MODELS = CONFIG_DIR / "model"


def _cfg(name: str):
    return OmegaConf.load(MODELS / f"{name}.yaml")


# Published sizes: Llama-2 paper Table 1/2 and the HF model cards (7B: 6.74e9, 13B: 13.0e9); LLaVA-1.5-7B
# (llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 0.30e9 + projector 0.02e9 + Vicuna-7B with 32064 tokens).
@pytest.mark.parametrize("name,published", [("llama2_7b_random", 6.74e9), ("llama2_13b_random", 13.0e9),
                                            ("llava15_7b_random", 7.06e9)])
def test_meta_build_has_published_parameter_count(name, published):
    n = parameter_count(_cfg(name))
    assert abs(n - published) / published <= 0.01, (name, n)


def test_meta_build_allocates_nothing():
    model = build(_cfg("llama2_13b_random"), torch.float16, "meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.float16}


def test_random_llava_keeps_the_llava15_architecture():
    """The random LLaVA and the hub config describe the same model (one arch, two sources)."""
    assert OmegaConf.to_container(_cfg("llava15_7b_random").arch) == {
        **OmegaConf.to_container(_cfg("llava15_7b").arch),
        "text": {**OmegaConf.to_container(_cfg("llava15_7b").arch.text), "rms_norm_eps": 1e-5}}


def test_load_model_refuses_random_weights_without_speed_only():
    with pytest.raises(ConfigError) as e:
        load_model(_cfg("llama_tiny_random"))
    assert e.value.setting == "model" and SPEED_ONLY_NOTE in str(e.value)
    lm = load_model(_cfg("llama_tiny_random"), speed_only=True)
    assert lm.family == "llama" and lm.context == 4096 and isinstance(lm.tokenizer, ByteTokenizer)
    again = load_model(_cfg("llama_tiny_random"), speed_only=True)
    assert all(torch.equal(p, q) for p, q in zip(lm.model.parameters(), again.model.parameters()))


@pytest.mark.parametrize("experiment", ["ppl_table1", "ppl_4m"])
def test_quality_experiments_refuse_random_models(tmp_path, experiment):
    from llm_efficiency_bench.core.runner import run

    cfg = compose("streaming_llm", [f"experiment={experiment}", "profile=smoke", "model=llama_tiny_random",
                                    f"results_dir={tmp_path}"])
    with pytest.raises(ConfigError) as e:
        run("streaming_llm", cfg)
    assert e.value.setting == "model" and "speed only" in str(e.value)


def test_speed_note_and_byte_tokenizer():
    assert speed_note(_cfg("llama2_7b_random"), "median of 5").endswith(SPEED_ONLY_NOTE)
    assert speed_note(_cfg("smollm2_135m"), "median of 5") == "median of 5"
    tok = ByteTokenizer(32000)
    ids = tok("héllo").input_ids
    assert ids[0] == tok.bos_token_id and len(ids) == 1 + len("héllo".encode()) and max(ids) < 32000
    assert tok.decode(ids) == "héllo"
    assert max(ByteTokenizer(40).encode("\xff" * 10)) < 40


def test_bad_builder_names_the_setting():
    cfg = OmegaConf.merge(_cfg("llama_tiny_random"), {"builder": {"model": "transformers:NoSuchModel"}})
    with pytest.raises(ConfigError) as e:
        build(cfg, torch.float32, "meta")
    assert e.value.setting == "model.builder.model"
    bad = OmegaConf.merge(_cfg("llama_tiny_random"), {"builder": {"config": "llm_efficiency_bench.core.random_models:nope"}})
    with pytest.raises(ConfigError):
        build(bad, torch.float32, "meta")
