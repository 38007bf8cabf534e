"""Sink-token pre-training (Table 3) and streaming chat: end to end at smoke size, plus the pieces."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.records import read_record
from llm_efficiency_bench.core.runner import run
from tests.conftest import compose

CONVERSATION = Path(__file__).parent / "data" / "conversation.jsonl"
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _artifacts_exist(path: Path, rec: dict) -> None:
    for kind in ("tables", "csv", "figures"):
        assert rec["artifacts"].get(kind), kind
        for rel in rec["artifacts"][kind]:
            assert (path.parent / rel).stat().st_size > 0


# ---------------------------------------------------------------------------------------------- end to end

@pytest.mark.e2e
def test_sink_pretrain_writes_record(tmp_path, data_dir):
    cfg = compose("streaming_llm", ["experiment=sink_pretrain", "profile=smoke", f"results_dir={tmp_path}",
                                    "threads=1"])
    path = run("streaming_llm", cfg)
    rec = read_record(path)
    L = cfg.experiment.cache
    assert rec["experiment"] == "sink_pretrain" and rec["profile"] == "smoke"
    for v in ("vanilla", "sink", "zero_sink"):
        vals = {}
        for s in (0, 1, 2, 4):
            m = rec["metrics"][f"ppl.{v}.{s}+{L - s}"]
            assert m["unit"] == "ppl" and m["direction"] == "lower" and m["value"] > 1
            vals[s] = m["value"]
        assert rec["metrics"][f"ratio.{v}.0_over_4"]["value"] == pytest.approx(vals[0] / vals[4])
        assert rec["metrics"][f"ratio.{v}.1_over_4"]["value"] == pytest.approx(vals[1] / vals[4])
        assert rec["metrics"][f"train_s.{v}"]["value"] >= 0
        shares = [rec["metrics"][f"sink_share.{v}.layer{k}"]["value"] for k in range(cfg.experiment.arch.layers)]
        assert all(0 <= x <= 1 for x in shares)
    assert "ratio.sink1_over_vanilla4" in rec["metrics"]
    assert rec["config"]["model"]["name"] == "tiny_llama_sink_pretrain"
    _artifacts_exist(path, rec)
    assert "Table 3" in (path.parent / "comparison.md").read_text()  # the Table 3 claims were compared


@pytest.mark.e2e
def test_chat_writes_record(tmp_path, data_dir):
    cfg = compose("streaming_llm", ["experiment=chat", "profile=smoke", f"results_dir={tmp_path}", "threads=1",
                                    f"experiment.conversation={CONVERSATION}"])
    path = run("streaming_llm", cfg)
    rec = read_record(path)
    m = {k: v["value"] for k, v in rec["metrics"].items()}
    L = cfg.experiment.cache
    assert m["chat.rounds"] == cfg.experiment.rounds
    assert m["chat.tokens_total"] > 3 * L  # the conversation overflowed the cache several times
    assert m["chat.cache_len.max"] <= L and m["chat.cache_len.final"] == L
    assert m["chat.cache_overflows"] == 0
    assert 0 < m["chat.rounds_nonempty"] <= m["chat.rounds"]
    assert m["chat.latency_ms_per_token.median"] > 0
    assert m["chat.rss_mb.start"] > 0 and m["chat.rss_mb.end"] > 0
    assert m["chat.template_mismatches"] == 0
    _artifacts_exist(path, rec)
    transcript = (path.parent / "transcript.csv").read_text()
    assert "farmer has 17 sheep" in transcript


def test_chat_missing_conversation_file(tmp_path, data_dir):
    cfg = compose("streaming_llm", ["experiment=chat", "profile=smoke", f"results_dir={tmp_path}",
                                    f"experiment.conversation={tmp_path}/nope.jsonl"])
    with pytest.raises(ConfigError, match="not found") as e:
        run("streaming_llm", cfg)
    assert e.value.setting == "experiment.conversation"


@pytest.mark.parametrize("n_sink", [64, 65])
def test_chat_sinks_must_leave_room(tmp_path, data_dir, n_sink):
    with pytest.raises(ConfigError, match="no room") as e:  # a rule of ChatSettings: refused at composition
        compose("streaming_llm", ["experiment=chat", "profile=smoke", f"results_dir={tmp_path}",
                                  "experiment.cache=64", f"experiment.n_sink={n_sink}",
                                  f"experiment.conversation={CONVERSATION}"])
    assert e.value.setting == "experiment.n_sink"


def test_conversation_formats(tmp_path):
    from llm_efficiency_bench.streaming_llm.chat import load_conversation

    turns = load_conversation(CONVERSATION)
    assert len(turns) == 8 and turns[1].startswith("Now make the note more formal")
    (tmp_path / "c.txt").write_text("first\n\nsecond\n")
    assert load_conversation(tmp_path / "c.txt") == ["first", "second"]
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\n')
    with pytest.raises(ConfigError) as e:
        load_conversation(tmp_path / "bad.jsonl")
    assert e.value.setting == "experiment.conversation"


# ------------------------------------------------------------------------------------- chat, unit level

def _tiny_chat_model(chat_template: str | None):
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm_efficiency_bench.core.tiny import train_bpe_tokenizer

    text = " ".join(load_turns()) * 20
    tok = train_bpe_tokenizer(text, 300, extra_special=["<|im_start|>", "<|im_end|>"])
    if chat_template:
        tok.chat_template = chat_template
        tok.eos_token = "<|im_end|>"
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval(), tok


def load_turns() -> list[str]:
    from llm_efficiency_bench.streaming_llm.chat import load_conversation

    return load_conversation(CONVERSATION)


@pytest.mark.parametrize("template", [None, CHATML])
def test_chat_cache_stays_within_s_plus_r_and_is_never_reset(template):
    from llm_efficiency_bench.streaming_llm.chat import StreamingChat, render

    model, tok = _tiny_chat_model(template)
    S, R = 2, 30
    chat = StreamingChat(model, tok, S, R, max_new_tokens=6)
    streamed = 0
    for user in load_turns():
        r = chat.turn(user)
        streamed += r.tokens_in + r.tokens_out
        assert r.cache_len <= S + R
        assert r.tokens_total == streamed  # every token of every round went into the one cache
        st = chat.session.evaluator.state  # at most S sinks + R recent tokens per layer
        for sk, rk in zip(st.sink_k, st.recent_k):
            assert sk.shape[-2] == S and rk.shape[-2] + S == r.cache_len
        assert r.keys_max <= S + R + max(1, r.tokens_in)
    assert streamed > 4 * (S + R)
    assert chat.session.seen == streamed and chat.session.cache_len == S + R
    assert chat.overflows == 0 and chat.template_mismatches == 0
    # What was streamed is the conversation in the model's template, turn after turn.
    assert render(tok, chat.messages, add_generation_prompt=False).startswith(chat.fed_text)


def test_chat_overflow_check_can_fail():
    from llm_efficiency_bench.streaming_llm.chat import StreamingChat

    model, tok = _tiny_chat_model(None)
    chat = StreamingChat(model, tok, 2, 30, max_new_tokens=4)
    chat.capacity = 16  # pretend the policy were smaller than what the cache keeps
    for user in load_turns()[:3]:
        chat.turn(user)
    assert chat.overflows > 0


# ---------------------------------------------------------------------------------- pre-training pieces

def test_prepend_sink_puts_the_sink_at_position_0():
    from llm_efficiency_bench.streaming_llm.pretrain import prepend_sink

    batch = torch.arange(2, 2 + 3 * 9).view(3, 9)  # (B, T+1)
    out = prepend_sink(batch, 1)
    assert out.shape == batch.shape
    assert (out[:, 0] == 1).all()
    assert torch.equal(out[:, 1:], batch[:, :-1])  # T inputs, T text targets, same context length
    assert not (batch == 1).any()


def _tiny_setup(tmp_path, monkeypatch):
    from llm_efficiency_bench.streaming_llm.pretrain import cached_tokenizer

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    text = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
            "of foolishness. ") * 60
    tok, ids, key = cached_tokenizer(text, 200)
    arch = {"hidden": 16, "intermediate": 32, "layers": 2, "heads": 2, "kv_heads": 2}
    train = {"steps": 4, "batch": 2, "seq_len": 16, "lr": 0.003, "seed": 0, "warmup": 1}
    return tok, ids, key, arch, train


def test_sink_training_windows_start_with_the_sink_token(tmp_path, monkeypatch):
    from llm_efficiency_bench.streaming_llm.pretrain import SINK_TOKEN, pretrain_variant

    tok, ids, key, arch, train = _tiny_setup(tmp_path, monkeypatch)
    sink_id = tok.convert_tokens_to_ids(SINK_TOKEN)
    seen: dict[str, list[torch.Tensor]] = {"vanilla": [], "sink": []}
    from transformers.models.llama import modeling_llama

    real_forward = modeling_llama.LlamaForCausalLM.forward
    current = {"v": ""}

    def spy(self, input_ids=None, **kw):
        if self.training:
            seen[current["v"]].append(input_ids.clone())
        return real_forward(self, input_ids=input_ids, **kw)

    monkeypatch.setattr(modeling_llama.LlamaForCausalLM, "forward", spy)
    for v in ("vanilla", "sink"):
        current["v"] = v
        pretrain_variant(v, arch, train, tok, ids, key, log=lambda _: None)
    assert len(seen["sink"]) == train["steps"] and len(seen["vanilla"]) == train["steps"]
    for x in seen["sink"]:
        assert x.shape == (train["batch"], train["seq_len"])
        assert (x[:, 0] == sink_id).all() and not (x[:, 1:] == sink_id).any()
    for x in seen["vanilla"]:
        assert x.shape == (train["batch"], train["seq_len"]) and not (x == sink_id).any()


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    from llm_efficiency_bench.streaming_llm import pretrain

    tok, ids, key, arch, train = _tiny_setup(tmp_path, monkeypatch)
    first = pretrain.pretrain_variant("sink", arch, train, tok, ids, key, log=lambda _: None)
    assert not first.cached
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "other"))  # a fresh cache: trains again
    second = pretrain.pretrain_variant("sink", arch, train, tok, ids, key, log=lambda _: None)
    assert not second.cached and second.folder != first.folder
    assert second.info["losses"] == first.info["losses"]
    for (n, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), n

    def no_training(*a, **k):
        raise AssertionError("retrained although the settings are cached")

    monkeypatch.setattr(pretrain, "train_causal_lm", no_training)
    third = pretrain.pretrain_variant("sink", arch, train, tok, ids, key, log=lambda _: None)
    assert third.cached and third.info["losses"] == first.info["losses"]
    with pytest.raises(AssertionError, match="retrained"):  # other settings are not served from the cache
        pretrain.pretrain_variant("sink", arch, {**train, "lr": 0.001}, tok, ids, key, log=lambda _: None)


def test_softmax1_matches_hand_computation():
    from llm_efficiency_bench.streaming_llm.pretrain import softmax1_attention

    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)  # (B, H, T, D)
    module = torch.nn.Module().eval()
    out, _ = softmax1_attention(module, q, k, v, None, scaling=0.5)  # (B, T, H, D)
    for h in range(2):
        for t in range(5):
            s = [float(q[0, h, t] @ k[0, h, j]) * 0.5 for j in range(t + 1)]
            z = 1.0 + sum(torch.tensor(x).exp().item() for x in s)  # the "+1" of SoftMax1
            want = sum(torch.tensor(s[j]).exp().item() / z * v[0, h, j] for j in range(t + 1))
            assert torch.allclose(out[0, t, h], want, atol=1e-5)
    # Unlike softmax, the weights may sum to less than one: a query can attend to "nothing".
    plain = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5).transpose(1, 2)
    assert not torch.allclose(out, plain, atol=1e-3)
    # An explicit boolean mask gives the same result as the implicit causal one.
    mask = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
    assert torch.allclose(softmax1_attention(module, q, k, v, mask, scaling=0.5)[0], out, atol=1e-6)


def test_softmax1_model_through_the_exact_evaluator():
    """The zero-sink model's PPL comes from the chunked evaluator via a zero key/value sink: it must equal
    the model's own SoftMax1 forward."""
    from transformers import LlamaForCausalLM

    from llm_efficiency_bench.core.tiny import llama_config
    from llm_efficiency_bench.streaming_llm.adapters import adapter_for
    from llm_efficiency_bench.streaming_llm.engine import CachePolicy
    from llm_efficiency_bench.streaming_llm.ppl import build_stream, evaluate
    from llm_efficiency_bench.streaming_llm.pretrain import SOFTMAX1, NullKeyAdapter

    torch.manual_seed(0)
    cfg = llama_config({"hidden": 64, "intermediate": 128, "layers": 3, "heads": 4, "kv_heads": 2}, 101, 512)
    cfg._attn_implementation = SOFTMAX1
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # peaky attention, so SoftMax1 vs softmax matters
        for name, p in model.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(4.0)
    ids = torch.randint(1, 101, (300,))
    with torch.no_grad():
        ref = F.cross_entropy(model(ids[None]).logits[0, :-1], ids[1:], reduction="none")
    stream = build_stream([("a", ids.tolist())], None)
    nll = evaluate(NullKeyAdapter(adapter_for(model)).arm(), CachePolicy(1, None), stream, 64, prefix=[0])
    assert torch.allclose(nll, ref, atol=1e-4)
    plain = evaluate(adapter_for(model), CachePolicy(0, None), stream, 64)  # ordinary softmax differs
    assert (plain - ref).abs().max() > 1e-2


def test_non_text_conversation_file_names_the_setting(tmp_path):
    """The conversation file is decoded strictly like every other text (llm_efficiency_bench.core.data.read_text)."""
    from llm_efficiency_bench.core.errors import ConfigError
    from llm_efficiency_bench.streaming_llm.chat import load_conversation

    p = tmp_path / "conv.txt"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError) as e:
        load_conversation(p)
    assert e.value.setting == "experiment.conversation"
