"""A bad data file costs one line naming the file (and line), never a raw decoder traceback or data dropped
without a word: JSONL task files through every loader, and empty books."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from llm_efficiency_bench.core import data
from llm_efficiency_bench.core.data import load_documents
from llm_efficiency_bench.core.errors import ConfigError

GOOD = {"question": "1+1?", "answer": "2\n#### 2", "unique_id": "u/1", "problem": "p", "solution": "s",
        "task_id": 11, "text": "t", "code": "def f(x):\n    return x\n", "test_list": ["assert f(1) == 1"],
        "prompt": "def f(x):\n", "entry_point": "f", "canonical_solution": "    return x\n"}


def _jsonl(path: Path, bad_line: int | None, n: int = 4, bad: str = '{"question": "unterminated') -> Path:
    lines = [json.dumps({**GOOD, "task_id": 11 + i}) for i in range(n)]
    if bad_line is not None:
        lines[bad_line - 1] = bad
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_read_jsonl_names_file_and_line(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", bad_line=3)
    with pytest.raises(ConfigError, match=rf"{path} line 3 is not valid JSON") as e:
        data.read_jsonl(path)
    assert e.value.setting == "data_dir"
    assert len(data.read_jsonl(_jsonl(tmp_path / "ok.jsonl", None))) == 4


@pytest.mark.parametrize("bad,expect", [
    ("[1, 2]", "line 2 is a JSON list, not an object"),
    ('{"answer": "3"}', "line 2 has no field 'question'"),
])
def test_read_jsonl_rows_must_be_objects_with_their_fields(tmp_path, bad, expect):
    path = _jsonl(tmp_path / "x.jsonl", bad_line=2, bad=bad)
    with pytest.raises(ConfigError, match=expect):
        data.read_jsonl(path, fields=("question",))


def test_read_jsonl_torn_gzip_and_bad_utf8_are_one_line(tmp_path):
    gz = _jsonl(tmp_path / "x.jsonl.gz", None)
    gz.write_bytes(gz.read_bytes()[:20])  # a torn download
    with pytest.raises(ConfigError, match=r"cannot read .*x\.jsonl\.gz"):
        data.read_jsonl(gz)
    latin = tmp_path / "l.jsonl"
    latin.write_bytes('{"question": "K\xe4se"}\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"l\.jsonl is not UTF-8"):
        data.read_jsonl(latin)


LOADERS = {
    "gsm8k": ("gsm8k/test.jsonl", lambda T, d: T.load_gsm8k(d, "test")),
    "math500": ("math500/test.jsonl", lambda T, d: T.load_math500(d)),
    "humaneval": ("humaneval/HumanEval.jsonl.gz", lambda T, d: T.load_humaneval(d)),
    "mbpp": ("mbpp/mbpp.jsonl", lambda T, d: T.load_mbpp(d)),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_task_loader_names_the_bad_line(tmp_path, name):
    from llm_efficiency_bench.adaptive_step import tasks

    rel, load = LOADERS[name]
    _jsonl(tmp_path / rel, bad_line=None)
    assert len(load(tasks, str(tmp_path))) == 4  # the good file loads
    path = _jsonl(tmp_path / rel, bad_line=3)
    with pytest.raises(ConfigError, match=rf"{path} line 3 is not valid JSON"):
        load(tasks, str(tmp_path))


def test_gsm8k_answer_without_its_marker_is_named(tmp_path):
    from llm_efficiency_bench.adaptive_step import tasks

    path = _jsonl(tmp_path / "gsm8k" / "test.jsonl", bad_line=2, bad=json.dumps({"question": "q", "answer": "2"}))
    with pytest.raises(ConfigError, match=rf"{path} row 2: the answer has no '####"):
        tasks.load_gsm8k(str(tmp_path), "test")


def test_chat_conversation_jsonl_names_the_bad_line(tmp_path):
    from llm_efficiency_bench.streaming_llm.chat import load_conversation

    path = tmp_path / "conv.jsonl"
    path.write_text('{"turns": ["hi", "there"]}\n"a bare string turn"\n{"turns": [\n')
    with pytest.raises(ConfigError, match=rf"{path} line 3 is not valid JSON") as e:
        load_conversation(path)
    assert e.value.setting == "experiment.conversation"
    path.write_text('{"turns": ["hi", "there"]}\n"a bare string turn"\n')
    assert load_conversation(path) == ["hi", "there", "a bare string turn"]


def test_released_candidates_name_the_bad_line(tmp_path, monkeypatch):
    from llm_efficiency_bench.adaptive_step import candidates

    path = tmp_path / "cands.jsonl"
    row = {"question": "1+1?", "input": "1+1?", "answer": "2", "pred": ["2", "3"]}
    path.write_text(json.dumps(row) + "\n" + "{oops\n")
    cfg = OmegaConf.create({"released": {"candidates": str(path), "fields": {}, "pool": None},
                            "samples": {"test_questions": 5}, "data_dir": str(tmp_path)})
    monkeypatch.setattr(candidates, "make_task", lambda cfg: object())  # a math task: rows carry their own answers
    with pytest.raises(ConfigError, match=rf"{path} line 2 is not valid JSON") as e:
        candidates.load_candidates(cfg)
    assert e.value.setting == "released.candidates"


BOOK = "It was the best of times, it was the worst of times.\n" * 20


@pytest.mark.parametrize("limit", [1, None], ids=["smoke-limit", "all-books"])
def test_an_empty_book_is_named_never_dropped(tmp_path, limit):
    d = tmp_path / "books"
    d.mkdir()
    (d / "a_empty.txt").write_text("  \n")
    for name in ("b_one", "c_two", "d_three"):
        (d / f"{name}.txt").write_text(BOOK)
    cfg = OmegaConf.create({"kind": "text_dir", "subdir": "books"})
    with pytest.raises(ConfigError, match=rf"book {d / 'a_empty.txt'} is empty \(3 other") as e:
        load_documents(cfg, str(tmp_path), limit=limit)
    assert "every .txt file" not in str(e.value) and e.value.setting == "data.subdir"
    (d / "a_empty.txt").unlink()
    assert len(load_documents(cfg, str(tmp_path))) == 3
