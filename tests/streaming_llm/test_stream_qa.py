"""Streaming QA on ARC (Table 5): the loader, the stream's bookkeeping, the statistics, and the smoke run."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.records import read_record
from llm_efficiency_bench.core.runner import run
from llm_efficiency_bench.streaming_llm.arc import Question, load_arc
from llm_efficiency_bench.streaming_llm.stream_qa import QAStream, choices_text, paired_diff, parse_reply, user_text
from tests.conftest import compose
from tests.streaming_llm.test_pretrain_chat import CHATML, _tiny_chat_model

Q = Question("q1", "Which gas do plants take in?", ("A", "B", "C", "D"),
             ("oxygen", "carbon dioxide", "helium", "neon"), 1)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_arc_files_load_in_order_with_their_labels(data_dir):
    easy = load_arc("arc_easy", "test", str(data_dir))
    chal = load_arc("arc_challenge", "test", str(data_dir))
    assert len(easy) == 2376 and len(chal) == 1170  # MANIFEST.md counts
    for q in easy[:50] + chal[:50]:
        assert len(q.labels) == len(q.choices) >= 3 and 0 <= q.answer < len(q.choices)
    assert any(q.labels[0] == "1" for q in easy)  # numeric labels are kept as they are
    first = json.loads((data_dir / "arc" / "arc_easy_test.jsonl").read_text().splitlines()[0])
    assert easy[0].id == first["id"] and easy[0].labels[easy[0].answer] == first["answerKey"]


def test_arc_bad_inputs_name_the_setting(tmp_path, monkeypatch):
    (tmp_path / "arc").mkdir()
    bad = {"id": "x", "question": {"stem": "s", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "B"}
    (tmp_path / "arc" / "arc_easy_test.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ConfigError, match="answerKey 'B'"):
        load_arc("arc_easy", "test", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        load_arc("arc_medium", "test", str(tmp_path))
    assert e.value.setting == "experiment.splits"
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "datasets" else real_import(name, *a, **k))
    with pytest.raises(ConfigError, match="arc_challenge_test.jsonl not found") as e:
        load_arc("arc_challenge", "test", str(tmp_path))
    assert e.value.setting == "data_dir"


def test_parse_reply():
    assert parse_reply("B", Q) == 1 and parse_reply(" (b) carbon dioxide", Q) == 1 and parse_reply("C.", Q) == 2
    assert parse_reply("Carbon dioxide, because", Q) == 1
    assert parse_reply("Plants take in carbon dioxide", Q) is None  # names no choice up front
    assert parse_reply("", Q) is None and parse_reply("E", Q) is None
    assert "B. carbon dioxide" in choices_text(Q) and user_text(Q) == "Question: Which gas do plants take in?\nAnswer:"


def test_paired_diff():
    a = np.array([1, 1, 0, 1, 0, 1, 1, 1] * 10)
    d, lo, hi = paired_diff(a, a)
    assert d == lo == hi == 0
    b = np.array([0, 1, 0, 1, 0, 0, 1, 1] * 10)
    d, lo, hi = paired_diff(a, b)
    assert d == pytest.approx(25.0) and lo < d < hi and lo > 0  # a is better on 2 of 8, never worse


def _recorder(qa: QAStream) -> list[int]:
    """Tokens fed to the stream (what happens on a branch, which is undone, not counted)."""
    fed: list[int] = []
    feed, branch = qa.reader.feed, qa.reader.branch
    on = [True]

    def wrapped(ids):
        if on[0]:
            fed.extend(ids)
        return feed(ids)

    @contextlib.contextmanager
    def wrapped_branch():
        on[0] = False
        try:
            with branch() as s:
                yield s
        finally:
            on[0] = True

    qa.reader.feed, qa.reader.branch = wrapped, wrapped_branch
    return fed


def test_stream_is_the_conversation_with_the_chosen_answers():
    """Everything fed is the chat template of the questions and the chosen answers, nothing reset."""
    model, tok = _tiny_chat_model(CHATML)
    qa = QAStream(model, tok, "streaming", n_sink=2, cache=40, chunk=16, max_new_tokens=4)
    fed = _recorder(qa)
    qs = [Question(f"q{k}", f"Question {k}: what is {k} plus {k}?", ("A", "B", "C"),
                   (f"{2 * k}", f"{k}", f"{k + 1} or so"), 0) for k in range(1, 6)]
    msgs, last = [], -1
    for k, q in enumerate(qs):
        row = qa.ask(q, "s", k, generate=k == 2)
        assert row.stream_tokens > last
        last = row.stream_tokens
        msgs += [{"role": "user", "content": user_text(q)}, {"role": "assistant", "content": q.choices[row.pick_norm]}]
        assert (row.correct_gen >= 0) == (k == 2)
    want = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    assert tok.decode(fed) == want  # the last answer is pending, fed with the next question
    assert qa.reader.seen == len(fed) > 4 * 40 and qa.reader.cache_len == 40
    assert qa.template_mismatches == 0


def test_one_shot_starts_every_question_from_an_empty_cache():
    model, tok = _tiny_chat_model(CHATML)
    qa = QAStream(model, tok, "one_shot", n_sink=2, cache=40, chunk=16, max_new_tokens=4)
    first = qa.ask(Q, "s", 0, generate=False)
    again = qa.ask(Q, "s", 1, generate=False)
    assert first.stream_tokens == again.stream_tokens == 0
    assert (first.pick_acc, first.pick_norm) == (again.pick_acc, again.pick_norm)


@pytest.mark.e2e
def test_stream_qa_smoke_writes_record(tmp_path, data_dir):
    cfg = compose("streaming_llm", ["experiment=stream_qa", "profile=smoke", f"results_dir={tmp_path}"])
    path = run("streaming_llm", cfg)
    rec = read_record(path)
    m = {k: v["value"] for k, v in rec["metrics"].items()}
    n = cfg.experiment.questions
    for split in ("arc_easy", "arc_challenge"):
        for pol in ("one_shot", "window", "streaming"):
            assert m[f"{split}.{pol}.questions"] == n and 0 <= m[f"{split}.{pol}.acc_norm"] <= 100
            assert f"{split}.{pol}.em" in m
        for pol in ("dense", "window", "streaming"):
            name = f"{split}.{pol}.acc_norm_minus_one_shot"
            assert m[f"{name}.ci_lo"] <= m[name] <= m[f"{name}.ci_hi"]
        assert m[f"{split}.streaming.cache_over_budget"] <= 0
        assert m[f"{split}.stream_tokens"] > 3 * cfg.experiment.cache  # the stream overflowed the cache
        assert 0 < m[f"{split}.dense.stopped_at_token"] and m[f"{split}.dense.questions"] < n  # dense stopped
        assert f"{split}.dense.past_context.acc_norm_minus_one_shot" in m
    answers = (path.parent / "answers.csv").read_text().splitlines()
    assert len(answers) == 1 + sum(m[k] for k in m if k.endswith(".questions"))
    for kind in ("tables", "csv", "figures"):
        for rel in rec["artifacts"][kind]:
            assert (path.parent / rel).stat().st_size > 0
    assert "table5_stream_qa.png" in rec["artifacts"]["figures"]
    assert "never holds more" in (path.parent / "comparison.md").read_text()  # the Table 5 claims were compared


def test_stream_qa_needs_the_one_shot_baseline(tmp_path, data_dir):
    with pytest.raises(ConfigError) as e:  # a rule of StreamQASettings: refused at composition
        compose("streaming_llm", ["experiment=stream_qa", "profile=smoke", f"results_dir={tmp_path}",
                                  "experiment.policies=[window,streaming]"])
    assert e.value.setting == "experiment.policies"
