"""Markdown and CSV tables (long form) written beside records."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Sequence


def fmt(x: Any, digits: int = 2) -> str:
    """Format a cell: numbers to `digits` significant decimals, None/NaN as an em dash."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "inf"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** -digits):
            return f"{x:.{digits}e}"
        return f"{x:,.{digits}f}"
    return str(x)


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 2) -> str:
    """Render rows (dicts) as a GitHub Markdown table."""
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c), digits).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, title: str, rows: Sequence[dict[str, Any]], notes: Iterable[str] = (),
                   columns: Sequence[str] | None = None, digits: int = 2) -> Path:
    """Write a titled Markdown table with notes underneath."""
    body = f"### {title}\n\n" + markdown(rows, columns, digits)
    notes = [n for n in notes if n]
    if notes:
        body += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write long-form rows to CSV (all keys of all rows, first-seen order, unless `columns`)."""
    if columns is None:
        seen: dict[str, None] = {}
        for r in rows:
            for k in r:
                seen.setdefault(k, None)
        columns = list(seen)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path
