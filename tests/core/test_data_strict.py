"""Text is decoded strictly: a binary or wrongly-encoded book stops the run with its name."""

from __future__ import annotations

import random

import pytest
from omegaconf import OmegaConf

from llm_efficiency_bench.core.data import load_documents, read_text
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.tiny import read_corpus
from tests.conftest import CONFIGS

BOOK = "It was the best of times, it was the worst of times.\n" * 20


def _folder(tmp_path, files: dict[str, bytes]):
    d = tmp_path / "books"
    d.mkdir()
    for name, blob in files.items():
        (d / name).write_bytes(blob)
    return OmegaConf.create({"kind": "text_dir", "subdir": "books"})


def test_random_bytes_book_is_refused_with_its_name(tmp_path):
    blob = random.Random(0).randbytes(20_000)
    cfg = _folder(tmp_path, {"a_good.txt": BOOK.encode(), "book.txt": blob})
    with pytest.raises(ConfigError, match=r"book\.txt.*data\.subdir"):
        load_documents(cfg, str(tmp_path))


def test_latin1_book_is_refused_unless_declared(tmp_path):
    latin = ("Der Bär aß Käse im Café. " * 40).encode("latin-1")
    cfg = _folder(tmp_path, {"kaese.txt": latin})
    with pytest.raises(ConfigError, match=r"kaese\.txt is not utf-8 text"):
        load_documents(cfg, str(tmp_path))
    cfg.encodings = {"kaese": "latin-1"}
    (doc,) = load_documents(cfg, str(tmp_path))
    assert "Bär aß Käse" in doc.text and "\ufffd" not in doc.text


def test_bom_and_line_ends_are_normalised(tmp_path):
    text = "\ufeffline one\r\nline two\rline three\n"
    cfg = _folder(tmp_path, {"b.txt": text.encode("utf-8")})
    (doc,) = load_documents(cfg, str(tmp_path))
    assert doc.text == "line one\nline two\nline three\n"


def test_utf8_with_control_bytes_is_binary(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"looks like text\x00\x01\x02 but is not")
    with pytest.raises(ConfigError, match=r"x\.txt holds the control character"):
        read_text(p, "data.subdir")


def test_training_corpus_is_strict_too(tmp_path):
    (tmp_path / "corpus.txt").write_bytes(b"\xff\xfe\x00garbage" * 100)
    with pytest.raises(ConfigError, match=r"corpus\.txt.*model\.train\.corpus"):
        read_corpus(tmp_path, ["corpus.txt"], 1000)


@pytest.mark.e2e
def test_all_real_books_still_read(data_dir):
    cfg = OmegaConf.load(CONFIGS / "data" / "gutenberg.yaml")
    docs = load_documents(cfg, str(data_dir))
    assert len(docs) == len(list((data_dir / "gutenberg").glob("*.txt"))) == 45
    for d in docs:
        assert "\ufffd" not in d.text and "\r" not in d.text, d.name
    curly = next(d for d in docs if d.name == "frankenstein")
    assert "\u201c" in curly.text  # the Windows-1252 quotes decode to real quotes, not replacement marks
