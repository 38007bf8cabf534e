"""StreamEval: the generator's stream and answers, the experiment end to end, and misuse."""

from __future__ import annotations

import csv
import re

import pytest

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.records import read_record
from llm_efficiency_bench.core.runner import run
from llm_efficiency_bench.streaming_llm.stream_eval_data import HEADER, VERSION, generate, parse_answer
from tests.conftest import compose

LINE = re.compile(r"The REGISTER_CONTENT in line (\d+) is <(\d+)>")
QUERY = re.compile(r"Query: The REGISTER_CONTENT in line (\d+) is <(\d+)>")


def test_same_seed_same_stream_other_seed_other_values():
    a, b = generate(7, 300, [20, 40]), generate(7, 300, [20, 40])
    assert a.text() == b.text() and a.sha256() == b.sha256() and a.queries == b.queries
    c = generate(8, 300, [20, 40])
    assert c.values != a.values and c.sha256() != a.sha256()
    assert a.describe()["version"] == VERSION


def test_the_line_a_query_names_holds_its_answer():
    data = generate(3, 400, [20, 30, 60])
    text = data.text()
    assert text.startswith(HEADER)
    held = {int(k): int(v) for k, v in LINE.findall(text)}  # what the stream's lines really say
    assert sorted(held) == list(range(400)) and len(set(held.values())) == 400
    asked = QUERY.findall(text)
    assert len(asked) == len(data.queries) > 0
    for q, (key, value) in zip(data.queries, asked):
        assert int(key) == q.target and int(value) == held[q.target] == q.value
        # the query sits right after line `after_line`, `distance` lines after its target
        before = text.index(f"Query: The REGISTER_CONTENT in line {q.target} is")
        assert text[:before].rstrip("\n").splitlines()[-1].startswith(f"The REGISTER_CONTENT in line {q.after_line} ")
        assert q.distance == q.after_line - q.target >= q.nominal
    assert len({q.target for q in data.queries}) == len(data.queries)  # no line asked twice


def test_distances_as_configured():
    paper = generate(0, 200, [20])  # Fig. 8: after line 20 ask line 0, after 30 ask 10, ...
    assert [(q.after_line, q.target) for q in paper.queries[:3]] == [(20, 0), (30, 10), (40, 20)]
    assert all(q.distance == 20 for q in paper.queries)
    sweep = generate(0, 1000, [20, 30, 60, 120])
    late = [q for q in sweep.queries if q.after_line >= 120]
    counts = {d: sum(q.nominal == d for q in late) for d in (20, 30, 60, 120)}
    assert min(counts.values()) >= len(late) // 4 - 1  # cycled evenly once all fit
    assert max(q.distance - q.nominal for q in sweep.queries) <= 3  # stepped back only past already-asked lines


def test_generator_refuses_bad_settings():
    for kw in ({"distances": []}, {"distances": [0]}, {"distances": [5, 5]}, {"query_every": 0}, {"lines": 0},
               {"lines": 10, "max_value": 5}):
        with pytest.raises(ValueError):
            generate(0, **{"lines": 100, **kw})


def test_parse_answer():
    assert parse_answer(" <8806>\n") == 8806 and parse_answer(" <12") == 12 and parse_answer(" line") is None
    assert parse_answer("<1> and 2") == 1


def _cfg(tmp_path, extra=()):
    return compose("streaming_llm", ["experiment=stream_eval", "profile=smoke", f"results_dir={tmp_path}", *extra])


@pytest.mark.e2e
def test_smoke_experiment_writes_record(tmp_path, data_dir, one_thread):
    path = run("streaming_llm", _cfg(tmp_path))
    rec = read_record(path)
    assert rec["experiment"] == "stream_eval" and rec["profile"] == "smoke"
    m = rec["metrics"]
    for name in ("dev.accuracy", "streaming.accuracy", "streaming.accuracy.in_cache", "streaming.accuracy.beyond_cache",
                 "window.accuracy", "dense.accuracy", "dense.accuracy.past_context", "dense.accuracy.within_context",
                 "streaming.accuracy.d1", "streaming.accuracy.d4", "streaming.cache_over_budget",
                 "streaming_minus_dense.in_cache.ci_lo", "window_minus_streaming.in_cache.ci_hi",
                 "dense.past_minus_within_context.ci_hi", "streaming.in_cache.late_minus_early"):
        assert m[name]["value"] is not None, name
    assert 0 <= m["streaming.accuracy"]["value"] <= 100
    assert m["streaming.cache_over_budget"]["value"] <= 0  # never more than S + R tokens kept
    assert m["dense.stream_tokens"]["value"] <= 1000 + 200  # stopped at dense_max_tokens (+ the last answer)
    for kind in ("tables", "csv", "figures"):
        assert rec["artifacts"][kind]
        for rel in rec["artifacts"][kind]:
            assert (path.parent / rel).stat().st_size > 0
    answers = (path.parent / "answers.csv").read_text().splitlines()
    assert len(answers) > 1 and answers[0].startswith("policy,query,")
    with open(path.parent / "dataset.csv") as f:
        desc = next(csv.DictReader(f))
    assert int(desc["version"]) == VERSION and int(desc["seed"]) == 0 and len(desc["sha256"]) == 64


def test_answering_into_a_used_session_raises(one_thread):
    from llm_efficiency_bench.streaming_llm.generate import StreamingSession
    from llm_efficiency_bench.streaming_llm.stream_eval import answer_stream
    from tests.streaming_llm.models import tiny_llama

    session = StreamingSession(tiny_llama(), n_sink=4, window=60)
    session.feed([1, 2, 3])  # not an empty stream: line positions would be off by 3
    with pytest.raises(ValueError, match="already holds 3 tokens"):
        answer_stream(session, None, generate(0, 50), "streaming", None, 8)


def test_same_seeds_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="experiment.dev_seed"):
        run("streaming_llm", _cfg(tmp_path, ["experiment.dev_seed=0"]))


def test_a_stream_without_queries_is_refused(tmp_path, data_dir):
    with pytest.raises(ConfigError, match="experiment.lines"):
        run("streaming_llm", _cfg(tmp_path, ["experiment.lines=5"]))


class CharTokenizer:
    """One id per character (enough to stream StreamEval text through a tiny random model)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.ids = {c: i for i, c in enumerate(self.chars)}

    def __call__(self, text: str, add_special_tokens: bool = False):
        class Out:
            input_ids = [self.ids[c] for c in text]
        return Out()

    def decode(self, ids, **_):
        return "".join(self.chars[i] for i in ids)


def test_an_interrupted_stream_resumes_with_the_same_answers(one_thread):
    from llm_efficiency_bench.streaming_llm.generate import StreamingSession
    from llm_efficiency_bench.streaming_llm.stream_eval import Encoder, answer_stream
    from tests.streaming_llm.models import tiny_llama

    data = generate(5, 60, [3, 7], query_every=5)
    tok = CharTokenizer(data.text() + "0123456789<>:\n ")
    model = tiny_llama(vocab=len(tok.chars))
    enc = Encoder(tok)
    saved: list[dict] = []
    full = answer_stream(StreamingSession(model, 4, 100, chunk=64), enc, data, "streaming", None, 4,
                         save=saved.append)
    assert len(full) == len(data.queries) >= 8 and len(saved) == len(full)
    mid = saved[len(saved) // 2]  # as if the run had stopped after this answer
    resumed = answer_stream(StreamingSession(model, 4, 100, chunk=64), enc, data, "streaming", None, 4, resume=mid)
    assert resumed == full
    assert all(a.cache_tokens <= 104 for a in full)
