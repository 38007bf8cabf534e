"""StreamEval (paper Sec. 4.3, Fig. 8; Appendix C, Table 7): a deterministic line-retrieval stream.

The paper's dataset was never released, so it is generated here from a seed. Format (Fig. 8, LongEval-style):

    Below is a record of lines I want you to remember.
    The REGISTER_CONTENT in line 0 is <8806>
    ...
    The REGISTER_CONTENT in line 20 is <45603>
    Query: The REGISTER_CONTENT in line 0 is <model's answer>
    The REGISTER_CONTENT in line 21 is <29189>
    ...

Lines are numbered from 0 and hold distinct values drawn uniformly from 1..max_value (Fig. 8's values are
all below 50,000). A query follows every `query_every` lines (after line n = 10, 20, 30, ...) and asks for
the line `distance` lines back (Fig. 8: always 20). With several distances (Table 7's sweep, here in one
stream) the queries cycle through those that fit (distance <= n), and no line is asked twice: a later
query's target would otherwise have its value repeated by the earlier answer, closer than its distance.
When the line n - d was already asked, the query takes the nearest unasked line further back and records
its true distance. The text is plain, not in a chat template: Fig. 8 shows one record with the queries
inline and the answers as completions.

`VERSION` names this format and sampling; a record stores it with the seed and a hash of the stream, so
two records with the same version and seed evaluated the same text.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Iterator, Sequence

VERSION = 1
HEADER = "Below is a record of lines I want you to remember.\n"  # Fig. 8, first line
LINE = "The REGISTER_CONTENT in line {key} is <{value}>\n"  # Fig. 8
QUERY = "Query: The REGISTER_CONTENT in line {key} is"  # Fig. 8; the answer " <value>" is the completion


@dataclass(frozen=True)
class Query:
    """One question of the stream: asked right after line `after_line`, about line `target`."""

    index: int  # 0-based order in the stream
    after_line: int
    target: int
    value: int  # the number line `target` holds (the right answer)
    distance: int  # lines back: after_line - target
    nominal: int  # the configured distance this query stands for (distance >= nominal)

    @property
    def text(self) -> str:
        return QUERY.format(key=self.target)


@dataclass
class StreamEval:
    """A generated stream: the value of every line and the queries, in order."""

    seed: int
    values: list[int]
    queries: list[Query]
    query_every: int
    distances: list[int]
    version: int = VERSION
    _after: dict[int, Query] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._after = {q.after_line: q for q in self.queries}

    def line_text(self, i: int) -> str:
        return LINE.format(key=i, value=self.values[i])

    def pieces(self) -> Iterator[tuple[str, int | None, Query | None]]:
        """The stream in order as (text, line, query): the header (None, None), each line (its index, None),
        each query (None, the query)."""
        yield HEADER, None, None
        for i in range(len(self.values)):
            yield self.line_text(i), i, None
            q = self._after.get(i)
            if q is not None:
                yield q.text, None, q

    def text(self, answers: Sequence[str] | None = None) -> str:
        """The whole stream as one string; each query followed by its answer (default: the right one)."""
        out, k = [], 0
        for piece, _, q in self.pieces():
            out.append(piece)
            if q is not None:
                out.append(answers[k] if answers is not None else f" <{q.value}>\n")
                k += 1
        return "".join(out)

    def sha256(self) -> str:
        """Hash of the stream with the right answers: equal hashes, equal datasets."""
        return hashlib.sha256(self.text().encode()).hexdigest()

    def describe(self) -> dict:
        """What a record stores to name the dataset."""
        return {"name": "StreamEval", "version": self.version, "seed": self.seed, "lines": len(self.values),
                "queries": len(self.queries), "query_every": self.query_every, "distances": list(self.distances),
                "sha256": self.sha256(), "line_format": LINE.strip(), "query_format": QUERY, "header": HEADER.strip()}


def generate(seed: int, lines: int, distances: Sequence[int] = (20,), query_every: int = 10,
             max_value: int = 50_000) -> StreamEval:
    """Build a StreamEval stream.

    Args:
        seed: values depend only on it (and on `lines`, `max_value`); the same arguments give the same stream.
        lines: register lines in the stream.
        distances: lines back a query asks (one value: the paper's stream; several: a distance sweep).
        query_every: a query after every this many lines (after line n for n = query_every, 2*query_every, ...
            once a distance fits).
        max_value: values are distinct integers in 1..max_value.

    Raises:
        ValueError: for settings that cannot give a stream (the message names the argument).
    """
    ds = [int(d) for d in distances]
    if not ds or min(ds) < 1 or len(set(ds)) != len(ds):
        raise ValueError(f"distances must be distinct positive line counts (got {list(distances)})")
    if query_every < 1:
        raise ValueError(f"query_every must be >= 1 (got {query_every})")
    if lines < 1 or lines > max_value:
        raise ValueError(f"lines must be in 1..max_value={max_value} so that values are distinct (got {lines})")
    rng = random.Random(seed)
    values = [v + 1 for v in rng.sample(range(max_value), lines)]  # distinct, uniform over 1..max_value
    asked: set[int] = set()
    queries: list[Query] = []
    for n in range(query_every, lines, query_every):
        fits = [d for d in ds if d <= n]
        if not fits:
            continue
        d = fits[len(queries) % len(fits)]  # cycle through the distances that fit
        target = n - d
        while target in asked and target > 0:  # never ask a line twice (module docstring)
            target -= 1
        if target in asked:
            continue
        asked.add(target)
        queries.append(Query(len(queries), n, target, values[target], n - target, d))
    return StreamEval(seed, values, queries, query_every, ds)


def parse_answer(text: str) -> int | None:
    """The number a generated answer gives: the first run of digits (" <8806>" -> 8806), None if none."""
    digits = ""
    for ch in text:
        if ch.isdigit():
            digits += ch
        elif digits:
            break
    return int(digits) if digits else None
