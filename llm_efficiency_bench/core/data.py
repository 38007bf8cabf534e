"""Data files: a folder of `.txt` books (PG19 stand-in), a `datasets` corpus such as PG19, and JSONL rows.

The project never ships data. `text_dir` reads a folder under the data directory (a setting or
`BENCH_DATA_DIR`); `hf_dataset` fetches the real set through `datasets` on a machine with network.
`read_jsonl` is the one reader of JSONL task files (GSM8K, MATH500, MBPP, HumanEval, ARC, ...): a bad line
stops the run with the file and line number, never a bare decoder traceback.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.paths import data_dir as resolve_data_dir


@dataclass
class Document:
    name: str
    text: str


def read_text(path: Path, setting: str, encoding: str = "utf-8") -> str:
    """A text file decoded strictly (a leading UTF-8 BOM dropped, CRLF/CR line ends made LF).

    Replacement characters would turn a binary or Latin-1 file into a plausible-looking stream whose
    perplexity is meaningless (a random-bytes book scored PPL 100,614 with exit 0), so a file that does not
    decode, or decodes to control characters, stops the run instead.

    Args:
        path: the file.
        setting: the setting that chose the file (named in the error).
        encoding: its declared encoding; UTF-8 unless the data config names another for this file.

    Raises:
        ConfigError: naming the file and `setting`.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as e:
        raise ConfigError(setting, f"{path} is not {encoding} text ({e.reason} at byte {e.start}); convert it "
                          "to UTF-8 (e.g. iconv -f latin1 -t utf-8), or declare its encoding under "
                          "data.encodings") from e
    bad = next((c for c in text if c < " " and c not in "\t\n\r\f"), None)
    if bad is not None:  # decodable bytes can still be binary: books never hold NUL/ESC/... characters
        raise ConfigError(setting, f"{path} holds the control character {bad!r}: a binary file, not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def iter_jsonl(path: str | Path, setting: str = "data_dir", fields: Sequence[str] = (),
               objects: bool = True) -> Iterator[tuple[int, Any]]:
    """`(line number, row)` for each non-blank line of a JSONL file (`.gz` read compressed), 1-based.

    Args:
        path: the file.
        setting: the setting that chose the file (named in the error).
        fields: keys every row must have.
        objects: every row must be a JSON object (False: any JSON value, e.g. a bare string).

    Raises:
        ConfigError: naming the file, the line and what is wrong (not UTF-8, not JSON, not an object, a
            missing field), so a torn download or a hand edit costs one line, not a traceback.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(setting, f"{path} line {n} is not valid JSON ({e.msg} at column "
                                      f"{e.colno}); fix or re-fetch the file (scripts/fetch_data.py)") from e
                if objects and not isinstance(row, dict):
                    raise ConfigError(setting, f"{path} line {n} is a JSON {type(row).__name__}, not an object")
                missing = [f for f in fields if f not in row]
                if missing:
                    raise ConfigError(setting, f"{path} line {n} has no field {missing[0]!r}")
                yield n, row
    except UnicodeDecodeError as e:
        raise ConfigError(setting, f"{path} is not UTF-8 text ({e.reason}); fix or re-fetch the file") from e
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError on a torn file
        raise ConfigError(setting, f"cannot read {path} ({type(e).__name__}: {e})") from e


def read_jsonl(path: str | Path, setting: str = "data_dir", fields: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every row of a JSONL file, checked as `iter_jsonl` does."""
    return [row for _, row in iter_jsonl(path, setting, fields)]


def load_documents(cfg: Any, data_dir_setting: str | None, limit: int | None = None) -> list[Document]:
    """Documents in a fixed order (sorted by file name for `text_dir`, dataset order for `hf_dataset`).

    Args:
        cfg: the `data` config group: `kind` plus kind-specific keys.
        data_dir_setting: the `data_dir` setting (falls back to `BENCH_DATA_DIR`).
        limit: read at most this many documents.
    """
    kind = cfg.get("kind")
    if kind == "text_dir":
        root = resolve_data_dir(data_dir_setting) / cfg.subdir
        if not root.is_dir():
            raise ConfigError("data.subdir", f"text folder {root} does not exist")
        files = sorted(root.glob("*.txt"))
        if not files:
            raise ConfigError("data.subdir", f"text folder {root} has no .txt files")
        # Files that are not UTF-8 must be declared by name (data.encodings), never guessed.
        encodings = dict(cfg.get("encodings") or {})
        docs = []
        for f in files[: limit or None]:
            text = read_text(f, "data.subdir", str(encodings.get(f.stem, "utf-8")))
            if not text.strip():  # skipping it would shrink the document count without a word
                raise ConfigError("data.subdir", f"book {f} is empty ({len(files) - 1} other .txt file(s) in "
                                  f"{root}); remove it or restore its text")
            docs.append(Document(f.stem, text))
        return docs
    if kind == "hf_dataset":
        try:
            import datasets

            ds = datasets.load_dataset(cfg.path, cfg.get("name"), split=cfg.split, streaming=True)
            docs = []
            for i, row in enumerate(ds):
                if limit is not None and i >= limit:
                    break
                docs.append(Document(str(row.get(cfg.get("id_field", "short_book_title"), i)), row[cfg.text_field]))
        except Exception as e:  # network errors come in many types
            raise ConfigError(
                "data", f"cannot fetch dataset {cfg.path!r} ({type(e).__name__}: {str(e)[:160]}); on a machine "
                "without network use data=text_dir with data_dir pointing at a folder of books",
            ) from e
        if not docs:
            raise ConfigError("data", f"dataset {cfg.path!r} split {cfg.split!r} is empty")
        return docs
    raise ConfigError("data.kind", f"unknown data kind {kind!r}; expected text_dir or hf_dataset")


def iter_token_docs(docs: list[Document], tokenizer) -> Iterator[tuple[str, list[int]]]:
    """Tokenize each document separately, as the reference protocol does (the tokenizer adds BOS if its
    default does)."""
    for d in docs:
        yield d.name, tokenizer(d.text).input_ids
