"""The analytic FLOP counter: hand counts, the paper's 83.8%, conventions, and FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.fourier_vlm.flops import (Convention, TransformerArch, all_conventions, arch_from_llava_config,
                              convention_flops, decode_flops, exact_flops, layer_flops, reduction)
from llm_efficiency_bench.fourier_vlm.compress import TokenCompressor
from llm_efficiency_bench.fourier_vlm.llava import apply_compressor, llava_config
from tests.conftest import compose


def _arch7b():
    cfg = compose("fourier_vlm", ["experiment=flops", "profile=smoke"])
    return arch_from_llava_config(llava_config(cfg.experiment.models.llava15_7b.arch), "llava15_7b")


def test_layer_count_by_hand():
    a = TransformerArch(layers=1, hidden=3, intermediate=5, heads=1, kv_heads=1, head_dim=3, ffn_mats=3)
    n = 2
    macs_fastv = 4 * n * 3 ** 2 + 2 * n ** 2 * 3 + 2 * n * 3 * 5  # FastV: 4nd^2 + 2n^2d + 2ndm
    assert sum(layer_flops(a, n, ffn_mats=2, fastv=True).values()) == 2 * macs_fastv
    assert layer_flops(a, n)["ffn"] == 2 * 3 * n * 3 * 5
    gqa = TransformerArch(1, 8, 16, heads=4, kv_heads=1, head_dim=2, ffn_mats=3)
    assert layer_flops(gqa, 1)["proj"] == 2 * (8 * 8 + 8 * 2 + 8 * 2 + 8 * 8)


def test_decode_counts_one_token_per_step():
    a = TransformerArch(2, 4, 8, 2, 2, 2, 2)
    # G = 3 new tokens after a 5-token prompt: steps attend over 6 and 7 keys (the first token is the prefill's)
    expect = sum(2 * sum(layer_flops(a, 1, ctx).values()) for ctx in (6, 7))
    assert decode_flops(a, 5, 3) == pytest.approx(expect)
    assert decode_flops(a, 5, 1) == 0


def test_paper_convention_lands_on_83_8():
    a = _arch7b()
    conv = Convention("llm_vit_proj", 2, "prefill")
    base = convention_flops(a, 576, conv)["total"]
    red = [reduction(base, convention_flops(a, t, conv)["total"]) for t in (256, 144, 64, 36)]
    # shared/papers/fourier_vlm.yaml: 52.9 / 71.0 / 83.84 / 88.3 %
    assert red == pytest.approx([0.529, 0.710, 0.8384, 0.883], abs=6e-4)
    assert abs(red[2] - 0.838) < 0.003
    llm = Convention("llm", 2, "prefill")
    base = convention_flops(a, 576, llm)["total"]
    assert reduction(base, convention_flops(a, 64, llm)["total"]) == pytest.approx(0.892, abs=6e-4)
    # every other convention misses the paper's number by more than 0.3 points
    others = [c for c in all_conventions((0, 64)) if c != conv]
    for c in others:
        b = convention_flops(a, 576, c, 128)["total"]
        assert abs(reduction(b, convention_flops(a, 64, c, 128)["total"]) - 0.838) > 0.003, c.name


def test_convention_names_round_trip_and_errors():
    for c in all_conventions((0, 64)):
        assert Convention.parse(c.name) == c
    for bad in ("llm_ffn4_prefill", "vit_ffn2_prefill", "llm_ffn2_prefill_txtX", "flops"):
        with pytest.raises(ConfigError) as e:
            Convention.parse(bad)
        assert e.value.setting == "experiment.conventions"
    with pytest.raises(ConfigError):
        Convention("llm", 2, "decode")


@pytest.mark.parametrize("tokens", [576, 64])
def test_exact_count_matches_flop_counter_small_gqa(tokens):
    # a scaled LLaVA with grouped-query attention and real weights (CPU), compressor installed
    from transformers import LlavaForConditionalGeneration

    arch = {"vision": dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                           image_size=336, patch_size=14),
            "text": dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=300), "image_token_id": 299}
    cfg = llava_config(arch)
    # eager attention: FlopCounterMode has no formula for the fused CPU SDPA kernel (it would miss attention)
    model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="eager").eval()
    apply_compressor(model, None if tokens == 576 else TokenCompressor("dct", k=8))
    text = 7
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        feats = model.model.get_image_features(pixel_values=torch.randn(1, 3, 336, 336), vision_feature_layer=-2,
                                               vision_feature_select_strategy="default")
        assert feats.pooler_output[0].shape[0] == tokens
        out = model.model.language_model(inputs_embeds=torch.randn(1, tokens + text, 48))
        model.lm_head(out.last_hidden_state)
    ex = exact_flops(arch_from_llava_config(cfg), tokens, text).total
    assert abs(fc.get_total_flops() / ex - 1) < 0.01
