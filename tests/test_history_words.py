"""No development history in the tracked tree: docs, docstrings, comments, configs, references and test names
describe the code and the method as they are, not how they came to be.

The patterns are the forms history takes in prose ("session 4", "issue 11", "part 3", "the 60-minute target",
"673 tok/s before", a commit id); records under results/ and the JSON the runs write are measurements with
their provenance, so they are not scanned. An allow-list names the few legitimate uses.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = {
    "session N": re.compile(r"\bsessions? \d+\b", re.I),
    "issue N": re.compile(r"\bissues? #?\d+\b", re.I),
    "part N": re.compile(r"\bpart \d+\b", re.I),
    "a target reached or not": re.compile(r"(?<![.\w])target\s*(?:>=|<=|≥|≤|=?\s*\d)|\btarget (?:is |was )?(?:not )?reached"
                                          r"|\breached? the [\w.-]+ (?:\w+ )?target\b|\b\d+-minute target\b", re.I),
    "before/after a change": re.compile(r"\b(?:before|previous(?:ly)?|no longer|used to|earlier (?:run|code|"
                                        r"version|record|re-base)s?|old(?:er)? (?:code|policy|records?))\b"
                                        r"(?= (?:issue|session|the (?:fix|change|rewrite|refactor)|this change))"
                                        r"|\bfrom the code before\b|\btok/s before\b|/ \d+ min before\b", re.I),
    "the old code": re.compile(r"\bwith the old \w+|\bthe old \w+ (?:had|did)\b|\bdid before\b", re.I),
    "machine-load story": re.compile(r"\b(?:host|machine) (?:was |got )?busier\b|\bbeside other jobs\b", re.I),
    "commit id": re.compile(r"\bcommit [0-9a-f]{7,40}\b"),
}
SKIP_PREFIXES = ("results/",)  # records and their generated tables carry provenance (git sha) by design
SKIP_SUFFIXES = (".json", ".csv", ".png", ".pdf", ".jsonl", ".lock", ".gguf", ".safetensors")
# (path, pattern name, text) of legitimate uses
ALLOW = {
    ("tests/test_history_words.py", None),  # this file names the patterns
}


GENERATED = ["results/REPORT.md"]  # written by reproduce.report from the records: its generator must not emit history


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines()
            if not p.startswith(SKIP_PREFIXES) and not p.endswith(SKIP_SUFFIXES) and (ROOT / p).is_file()] + \
        [p for p in GENERATED if (ROOT / p).is_file()]


def history_mentions(paths: list[str]) -> list[str]:
    found = []
    for rel in paths:
        if (rel, None) in ALLOW:
            continue
        try:
            text = (ROOT / rel).read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for name, pat in PATTERNS.items():
                m = pat.search(line)
                if m and (rel, name) not in ALLOW:
                    found.append(f"{rel}:{n}: {name}: {line.strip()[:120]}")
    return found


def test_patterns_catch_history_and_spare_code():
    hits = history_mentions.__globals__["PATTERNS"]
    history = ["Session 4 (issue 11) built the cache", "issue 10, part 3", "the 60-minute target is not reached",
               "673 tok/s / 100 min before", "record (commit b0f4878)", "the host busier in the last three",
               "the layout the old Stage had", "with the old 16K re-base"]
    code = ["target_modules = ['q_proj']", "labels = target.clone()", "target = _canary(tmp_path)",
            "the target token", "def before_step(self):", "--target .whl/site",
            "returns the part of the cache", "q.after_line - q.target >= q.nominal", "issues a warning", "before the model is loaded"]
    assert all(any(p.search(t) for p in hits.values()) for t in history)
    assert not [t for t in code if any(p.search(t) for p in hits.values())]


def test_no_development_history_in_tracked_files():
    found = history_mentions(_tracked())
    assert not found, "development history in the tree:\n" + "\n".join(found)
