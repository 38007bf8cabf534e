"""Paper numbers and the comparison paper | ours | delta | within tolerance.

`references/<paper>.yaml` lists claims. Each claim names the record metric it is checked against:

    paper: streaming_llm
    source: shared/papers/streaming_llm.yaml (arXiv 2309.17453)
    claims:
      - id: t1_streaming_matches_recompute
        claim: StreamingLLM PPL matches sliding window with recomputation
        source: Table 1                      # table / figure of the paper
        paper_model: Llama-2-13B
        experiment: ppl_table1
        metric: ratio.streaming_over_recompute   # or  ratio: [metric_a, metric_b]  (ours = a / b)
        paper_value: 0.9945
        tolerance: {abs: 0.05}                # or {rel: 0.1}; |ours - paper| within it
        comparable_profiles: [paper]          # profiles whose value can be held to the paper's number
        shape: {max: 1.05}                    # optional: condition that checks the paper's *shape* on the
                                              # other profiles (min / max, inclusive)

Status per (claim, record): `reproduced` / `not reproduced` on a comparable profile; on another profile
`shape reproduced` / `not reproduced` when the claim has a shape condition, else `not comparable`
(a different model); `not run on this machine` when no record has the metric.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from bench.core.paths import REPO_ROOT
from bench.core.tables import markdown

REFERENCES_DIR = REPO_ROOT / "references"
STATUSES = ("reproduced", "shape reproduced", "not reproduced", "not comparable", "not run on this machine")


def load_references(paper: str, directory: Path = REFERENCES_DIR) -> dict[str, Any]:
    path = Path(directory) / f"{paper}.yaml"
    if not path.exists():
        raise FileNotFoundError(path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ValueError(f"{path}: expected a mapping with a 'claims' list")
    for c in data["claims"]:
        for key in ("id", "claim", "source", "experiment", "paper_value"):
            if key not in c:
                raise ValueError(f"{path}: claim {c.get('id', '?')} lacks '{key}'")
        if ("metric" in c) == ("ratio" in c):
            raise ValueError(f"{path}: claim {c['id']} needs exactly one of 'metric' or 'ratio'")
    return data


def paper_value(paper: str, claim_id: str, directory: Path = REFERENCES_DIR) -> float:
    """The paper's number for one claim (the one place paper numbers live).

    Raises:
        KeyError: when `references/<paper>.yaml` has no claim `claim_id`.
    """
    for c in load_references(paper, directory)["claims"]:
        if c["id"] == claim_id:
            return float(c["paper_value"])
    raise KeyError(f"references/{paper}.yaml has no claim {claim_id!r}")


def paper_table(paper: str, name: str, directory: Path = REFERENCES_DIR) -> dict[str, Any]:
    """A whole paper table from `paper_tables.<name>` of `references/<paper>.yaml`."""
    tables = load_references(paper, directory).get("paper_tables") or {}
    if name not in tables:
        raise KeyError(f"references/{paper}.yaml has no paper_tables.{name}")
    return tables[name]


def reference_papers(directory: Path = REFERENCES_DIR) -> list[str]:
    """Papers with a reference file, in their `report_order` (the regression tolerances are not a paper)."""
    papers = []
    for p in sorted(Path(directory).glob("*.yaml")):
        data = yaml.safe_load(p.read_text()) or {}
        if isinstance(data, dict) and "claims" in data:
            papers.append((data.get("report_order", 1_000), data.get("paper", p.stem)))
    return [name for _, name in sorted(papers)]


def metric_value(claim: dict[str, Any], metrics: dict[str, Any]) -> float | None:
    def get(name: str) -> float | None:
        m = metrics.get(name)
        return None if m is None or m.get("value") is None else float(m["value"])

    if "metric" in claim:
        return get(claim["metric"])
    a, b = (get(n) for n in claim["ratio"])
    if a is None or b is None or b == 0:
        return None
    return a / b


def within(ours: float, paper: float, tol: dict[str, float]) -> bool:
    if "abs" in tol and abs(ours - paper) <= float(tol["abs"]):
        return True
    if "rel" in tol and paper != 0 and abs(ours - paper) / abs(paper) <= float(tol["rel"]):
        return True
    return False


def shape_ok(ours: float, shape: dict[str, float]) -> bool:
    if "min" in shape and not ours >= float(shape["min"]):
        return False
    if "max" in shape and not ours <= float(shape["max"]):
        return False
    return True


def _tol_text(tol: dict[str, float] | None, shape: dict[str, float] | None) -> str:
    parts = []
    if tol:
        parts += [f"±{tol['abs']}" if k == "abs" else f"±{float(tol['rel']):.0%}" for k in tol if k in ("abs", "rel")]
    if shape:
        parts += [f"shape ≥ {shape['min']}" if k == "min" else f"shape ≤ {shape['max']}" for k in shape]
    return ", ".join(parts) or "—"


def tagged(name: str, record: dict[str, Any]) -> str:
    """`name`, or `name [tag]` for a record with a `run_tag` (a second configuration of the same experiment
    and profile, e.g. `bon [policy_2000_steps]`)."""
    tag = (record.get("config") or {}).get("run_tag")
    return f"{name} [{tag}]" if tag else str(name)


def compare(refs: dict[str, Any], records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (claim, record with that experiment); a claim with no record gets one row saying so."""
    records = list(records)
    rows = []
    for c in refs["claims"]:
        matched = [r for r in records if r.get("experiment") == c["experiment"]]
        found = False
        for r in sorted(matched, key=lambda r: r.get("profile", "")):
            ours = metric_value(c, r.get("metrics", {}))
            if ours is None:
                continue
            found = True
            paper = float(c["paper_value"])
            tol, shape = c.get("tolerance") or {}, c.get("shape")
            model = tagged((r.get("config", {}).get("model") or {}).get("name", "?"), r)
            if r.get("profile") in (c.get("comparable_profiles") or []):
                status = "reproduced" if tol and within(ours, paper, tol) else "not reproduced"
            elif shape:
                status = "shape reproduced" if shape_ok(ours, shape) else "not reproduced"
            else:
                status = "not comparable"
            rows.append({
                "claim": c["claim"], "source": c["source"], "paper": paper, "ours": ours,
                "model / profile": f"{model} / {r.get('profile')} (paper: {c.get('paper_model', '?')})",
                "delta": ours - paper if math.isfinite(ours) else None,
                "tolerance": _tol_text(tol, shape), "status": status, "id": c["id"],
            })
        if not found:
            rows.append({"claim": c["claim"], "source": c["source"], "paper": float(c["paper_value"]),
                         "ours": None, "model / profile": f"— (paper: {c.get('paper_model', '?')})",
                         "delta": None, "tolerance": _tol_text(c.get("tolerance"), c.get("shape")),
                         "status": "not run on this machine", "id": c["id"]})
    return rows


COLUMNS = ["claim", "source", "paper", "ours", "model / profile", "delta", "tolerance", "status"]


def comparison_markdown(paper: str, records: Iterable[dict[str, Any]], experiment: str | None = None) -> str:
    """The comparison table for `paper` (only claims of `experiment` if given)."""
    refs = load_references(paper)
    if experiment is not None:
        refs = {**refs, "claims": [c for c in refs["claims"] if c["experiment"] == experiment]}
    if not refs["claims"]:
        return ""
    rows = compare(refs, records)
    return f"#### {paper}: paper vs ours\n\n" + markdown(rows, COLUMNS, digits=3)
