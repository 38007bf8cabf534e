"""LLaVA integration on tiny random-weight configs: compression point, placeholders, generate, key mapping."""

from __future__ import annotations

import inspect

import pytest
import torch

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.fourier_vlm.compress import TokenCompressor
from llm_efficiency_bench.fourier_vlm.llava import (apply_compressor, convert_original_llava_state_dict, expand_image_placeholder,
                                     image_token_count, prompt_ids, random_llava)

ARCH = {"vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       image_size=336, patch_size=14),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     vocab_size=130), "image_token_id": 129}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return random_llava(ARCH, seed=0)


def test_signature_kept_and_restore(model):
    original = model.model.get_image_features
    sig = inspect.signature(original)
    apply_compressor(model, TokenCompressor("dct", k=8))
    assert model.model.get_image_features is not original
    assert inspect.signature(model.model.get_image_features) == sig
    apply_compressor(model, None)
    assert model.model.get_image_features == original


def test_compression_sits_between_tower_and_projector(model):
    pv = torch.randn(1, 3, 336, 336)
    comp = TokenCompressor("dct", k=6)
    apply_compressor(model, comp)
    try:
        with torch.no_grad():
            got = model.model.get_image_features(pixel_values=pv, vision_feature_layer=-2,
                                                 vision_feature_select_strategy="default").pooler_output[0]
            hs = model.model.vision_tower(pv, output_hidden_states=True).hidden_states[-2][:, 1:]  # (1, 576, 32)
            want = model.model.multi_modal_projector(comp(hs))[0]  # (36, 32)
    finally:
        apply_compressor(model, None)
    assert got.shape == (36, 32)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("k", [None, 16, 8, 6])
def test_generate_with_matching_placeholders(model, k):
    comp = None if k is None else TokenCompressor("dct", k=k)
    apply_compressor(model, comp)
    try:
        n = image_token_count(model, comp)
        assert n == (576 if k is None else k * k)
        ids = prompt_ids(model, n, [5, 6, 7])
        assert int((ids == 129).sum()) == n
        out = model.generate(input_ids=ids, pixel_values=torch.randn(1, 3, 336, 336),
                             attention_mask=torch.ones_like(ids), max_new_tokens=3, min_new_tokens=3,
                             do_sample=False)
        assert out.shape == (1, ids.shape[1] + 3)
        # the uncompressed count no longer fits the compressed features
        if k is not None:
            bad = prompt_ids(model, 576, [5])
            with pytest.raises(Exception, match="do not match"):
                model(input_ids=bad, pixel_values=torch.randn(1, 3, 336, 336))
    finally:
        apply_compressor(model, None)


def test_placeholder_text_expansion():
    assert expand_image_placeholder("USER: <image>\nhi", 3) == "USER: <image><image><image>\nhi"
    with pytest.raises(ConfigError):
        expand_image_placeholder("no image", 3)


def _to_original(key: str) -> str:
    """Inverse of the mapping, to build an original-format state dict from a transformers one (test only)."""
    for new, old in (("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
                     ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
                     ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model."),
                     ("model.language_model.", "model.")):
        if key.startswith(new):
            return old + key[len(new):]
    return key


def test_original_checkpoint_key_mapping(model):
    sd = model.state_dict()
    vocab = sd["lm_head.weight"].shape[0]
    original = {_to_original(k): v.clone() for k, v in sd.items()}
    # the original LLM has no <image> row: drop the last row, as the released checkpoints do
    original["model.embed_tokens.weight"] = original["model.embed_tokens.weight"][:-1]
    original["lm_head.weight"] = original["lm_head.weight"][:-1]
    original["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # old buffer: ignored
    assert any(k.startswith("model.mm_projector.0") for k in original)
    conv = convert_original_llava_state_dict(original, vocab_size=vocab)
    assert set(conv) == set(sd)
    for k in sd:
        assert conv[k].shape == sd[k].shape, k
    assert torch.equal(conv["model.multi_modal_projector.linear_2.weight"], sd["model.multi_modal_projector.linear_2.weight"])
    assert torch.equal(conv["lm_head.weight"][:-1], sd["lm_head.weight"][:-1])
    assert torch.all(conv["lm_head.weight"][-1] == 0)
    fresh = random_llava(ARCH, seed=1)
    fresh.load_state_dict(conv, strict=True)
    with pytest.raises(ConfigError, match="no mapping"):
        convert_original_llava_state_dict({"model.something_else.weight": torch.zeros(1)})


def test_loader_base_plus_original_checkpoint(tmp_path, model):
    """`paper` loader path with local folders: llava-hf base + a Fourier checkpoint in the original format."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from llm_efficiency_bench.fourier_vlm.llava import load_paper_llava

    model.save_pretrained(tmp_path / "base")
    other = random_llava(ARCH, seed=7)  # stands for the fine-tuned Fourier weights
    original = {_to_original(k): v.clone().contiguous() for k, v in other.state_dict().items()
                if not k.startswith("model.vision_tower.")}  # released checkpoints carry no CLIP tower
    original["model.embed_tokens.weight"] = original["model.embed_tokens.weight"][:-1].contiguous()
    original["lm_head.weight"] = original["lm_head.weight"][:-1].contiguous()
    (tmp_path / "fourier").mkdir()
    save_file(original, str(tmp_path / "fourier" / "model.safetensors"))
    cfg = OmegaConf.create({"hub_id": str(tmp_path / "base"), "fourier_checkpoint": str(tmp_path / "fourier")})
    loaded = load_paper_llava(cfg, torch.float32, "cpu")
    sd, base_sd, other_sd = loaded.state_dict(), model.state_dict(), other.state_dict()
    assert torch.equal(sd["model.multi_modal_projector.linear_1.weight"], other_sd["model.multi_modal_projector.linear_1.weight"])
    assert torch.equal(sd["model.language_model.layers.1.mlp.up_proj.weight"], other_sd["model.language_model.layers.1.mlp.up_proj.weight"])
    assert torch.equal(sd["model.vision_tower.embeddings.patch_embedding.weight"],
                       base_sd["model.vision_tower.embeddings.patch_embedding.weight"])
    assert torch.equal(sd["lm_head.weight"][-1], base_sd["lm_head.weight"][-1])  # <image> row from the base
    assert torch.equal(sd["lm_head.weight"][:-1], other_sd["lm_head.weight"][:-1])
    with pytest.raises(ConfigError) as e:
        load_paper_llava(OmegaConf.create({"hub_id": str(tmp_path / "absent"), "fourier_checkpoint": None}),
                         torch.float32, "cpu")
    assert e.value.setting == "model.hub_id"


def test_processor_emits_budget_placeholders():
    """A LlavaProcessor built locally (word-level tokenizer, CLIP image processor) then set to k*k placeholders."""
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

    from llm_efficiency_bench.fourier_vlm.llava import budget_processor

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "<image>": 129}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  extra_special_tokens={"image_token": "<image>"})
    ip = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, image_token="<image>",
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)
    img = Image.new("RGB", (400, 300), (120, 30, 200))
    assert int((proc(images=img, text="hello <image> world", return_tensors="pt").input_ids == 129).sum()) == 576
    budget_processor(proc, 8)
    out = proc(images=img, text="hello <image> world", return_tensors="pt")
    assert int((out.input_ids == 129).sum()) == 64
    assert out.pixel_values.shape == (1, 3, 336, 336)
    with pytest.raises(ConfigError):
        budget_processor(proc, 5)
