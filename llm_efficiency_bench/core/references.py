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
        headline_run: default                 # optional: the run tag of the configuration that answers the
                                              # claim (`default`: the untagged record; else the paper-level
                                              # `headline_run`, else `default`)
        why: the tiny model did not learn ... # optional: one line saying why the claim is not reproduced
                                              # or not comparable, shown beside the verdict
        note: counting convention ...         # optional: what a reader must know to read the number
        requires: other_claim_id              # optional: a claim of the same experiment that must hold on
                                              # the same record for this one to mean anything; when it does
                                              # not, this claim is `not comparable`, with that as its reason

Status per (claim, record): `reproduced` / `not reproduced` on a comparable profile; on another profile
`shape reproduced` / `not reproduced` when the claim has a shape condition, else `not comparable`
(a different model); `not run on this machine` when no record has the metric.

A claim is answered by one configuration, its headline run: the record whose `run_tag` equals the claim's
`headline_run` (the untagged record by default), whatever the folder order. Records of other run tags are
further configurations of the same claim: the full comparison lists them under their tag, the verdict
summary and the README do not.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from llm_efficiency_bench.core.paths import REPO_ROOT, references_dir_of
from llm_efficiency_bench.core.tables import markdown

REFERENCES_DIR = REPO_ROOT / "references"
STATUSES = ("reproduced", "shape reproduced", "not reproduced", "not comparable", "not run on this machine")
NEEDS_REASON = ("not reproduced", "not comparable")  # verdicts the summary explains with the claim's `why`
DEFAULT_RUN = "default"  # `headline_run` value naming the untagged record
# The verdict words and the two kinds of check, defined once for REPORT.md and the README.
VERDICTS_TEXT = (
    "A *tolerance* (±0.05, ±5%) holds our number to the paper's and applies only on a profile that runs the "
    "paper's model (`comparable_profiles`, usually `paper`); a *shape condition* (≥ 1.2, ≤ 1.05) bounds a "
    "ratio that holds for any model if the paper's mechanism does, and judges the smaller models of the other "
    "profiles. Verdicts: **reproduced** = the paper's model, within tolerance; **shape reproduced** = another "
    "model, the shape condition holds; **not reproduced** = the tolerance or the shape condition fails; "
    "**not comparable** = another model and no shape condition (an absolute number of a different model, "
    "shown for information); **not run on this machine** = no record of the claim's experiment and "
    "configuration.")


def load_references(paper: str, directory: Path | None = None) -> dict[str, Any]:
    path = Path(directory or references_dir_of(paper)) / f"{paper}.yaml"
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
    data["all_claims"] = list(data["claims"])  # kept when callers narrow `claims` (a `requires` looks here)
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


def reference_papers(directory: Path | None = None) -> list[str]:
    """Papers with a reference file, in their `report_order` (the regression tolerances are not a paper);
    default: the suite's references and those of every folder in `BENCH_PAPERS_PATH`."""
    from llm_efficiency_bench.core.paths import paper_roots

    folders = [Path(directory)] if directory is not None else list(dict.fromkeys(r for _, r in paper_roots()))
    papers = []
    for p in sorted(f for d in folders for f in d.glob("*.yaml")):
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


def run_tag(record: dict[str, Any]) -> str | None:
    """The record's `run_tag` (None for the untagged, default configuration)."""
    tag = (record.get("config") or {}).get("run_tag")
    return str(tag) if tag else None


def headline_run(claim: dict[str, Any], refs: dict[str, Any] | None = None) -> str | None:
    """The run tag whose record answers `claim` (None: the untagged record): the claim's `headline_run`,
    else the reference file's, else the untagged record."""
    tag = claim.get("headline_run", (refs or {}).get("headline_run", DEFAULT_RUN))
    return None if tag in (None, DEFAULT_RUN) else str(tag)


def is_headline(claim: dict[str, Any], record: dict[str, Any], refs: dict[str, Any] | None = None) -> bool:
    """Whether `record` is the claim's headline configuration."""
    return run_tag(record) == headline_run(claim, refs)


def tagged(name: str, record: dict[str, Any]) -> str:
    """`name`, or `name [tag]` for a record with a `run_tag` (a second configuration of the same experiment
    and profile, e.g. `bon [policy_2000_steps]`)."""
    tag = (record.get("config") or {}).get("run_tag")
    return f"{name} [{tag}]" if tag else str(name)


def claim_status(c: dict[str, Any], ours: float, profile: str | None) -> str:
    """The verdict of one claim for one measured value: the tolerance on a profile that runs the paper's
    model, else the shape condition, else `not comparable`."""
    paper = float(c["paper_value"])
    tol, shape = c.get("tolerance") or {}, c.get("shape")
    if profile in (c.get("comparable_profiles") or []):
        return "reproduced" if tol and within(ours, paper, tol) else "not reproduced"
    if shape:
        return "shape reproduced" if shape_ok(ours, shape) else "not reproduced"
    return "not comparable"


def _unmet_precondition(refs: dict[str, Any], c: dict[str, Any], record: dict[str, Any]) -> str | None:
    """Why claim `c` says nothing on `record`: its `requires` claim (same experiment) fails there, e.g. "flat
    accuracy over the stream" holds vacuously for a model that answers nothing. None when it holds."""
    req_id = c.get("requires")
    if not req_id:
        return None
    req = next((x for x in refs.get("all_claims") or refs["claims"] if x["id"] == req_id), None)
    if req is None or req["experiment"] != c["experiment"]:
        raise ValueError(f"claim {c['id']}: requires '{req_id}', which is not a claim of experiment "
                         f"{c['experiment']}")
    value = metric_value(req, record.get("metrics", {}))
    status = None if value is None else claim_status(req, value, record.get("profile"))
    if status in ("reproduced", "shape reproduced"):
        return None
    return f"vacuous on this run: it needs claim `{req_id}` to hold, and that is {status or 'not measured'} here"


def compare(refs: dict[str, Any], records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (claim, record with that experiment), the claim's headline run first, then the other
    configurations by profile and run tag (`headline`: whether the row is the headline run); a claim with no
    record gets one row saying so. Each row carries the claim's `why`."""
    records = list(records)
    rows = []
    for c in refs["claims"]:
        matched = [r for r in records if r.get("experiment") == c["experiment"]]
        found = False
        for r in sorted(matched, key=lambda r: (not is_headline(c, r, refs), r.get("profile", ""),
                                                run_tag(r) or "")):
            ours = metric_value(c, r.get("metrics", {}))
            if ours is None:
                continue
            found = True
            paper = float(c["paper_value"])
            tol, shape = c.get("tolerance") or {}, c.get("shape")
            model = tagged((r.get("config", {}).get("model") or {}).get("name", "?"), r)
            status, why = claim_status(c, ours, r.get("profile")), c.get("why")
            pre = _unmet_precondition(refs, c, r)
            if pre is not None:  # the claim only means something when its precondition holds on this run
                status, why = "not comparable", pre
            rows.append({
                "claim": c["claim"], "source": c["source"], "paper": paper, "ours": ours,
                "model / profile": f"{model} / {r.get('profile')} (paper: {c.get('paper_model', '?')})",
                "delta": ours - paper if math.isfinite(ours) else None,
                "tolerance": _tol_text(tol, shape), "status": status, "id": c["id"],
                "headline": is_headline(c, r, refs), "profile": r.get("profile"), "why": why,
                "note": c.get("note"),
            })
        if not found:
            rows.append({"claim": c["claim"], "source": c["source"], "paper": float(c["paper_value"]),
                         "ours": None, "model / profile": f"— (paper: {c.get('paper_model', '?')})",
                         "delta": None, "tolerance": _tol_text(c.get("tolerance"), c.get("shape")),
                         "status": "not run on this machine", "id": c["id"], "headline": True,
                         "profile": None, "why": c.get("why"), "note": c.get("note")})
    return rows


def verdicts(refs: dict[str, Any], records: Iterable[dict[str, Any]], profile: str | None = None
             ) -> list[dict[str, Any]]:
    """One row per claim: its headline run's comparison row (of `profile`, when given), or `not run on this
    machine` when no headline record has the claim's metric."""
    records = [r for r in records if profile is None or r.get("profile") == profile]
    out = []
    for c in refs["claims"]:
        one = {**refs, "claims": [c]}
        rows = [r for r in compare(one, records) if r["headline"] and r["ours"] is not None]
        out.append(rows[0] if rows else compare(one, [])[0])
    return out


def verdict_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many rows carry each verdict, in `STATUSES` order."""
    rows = list(rows)
    return {s: sum(r["status"] == s for r in rows) for s in STATUSES}


COLUMNS = ["claim", "source", "paper", "ours", "model / profile", "delta", "tolerance", "status", "why / note"]


def comparison_markdown(paper: str, records: Iterable[dict[str, Any]], experiment: str | None = None) -> str:
    """The comparison table for `paper` (only claims of `experiment` if given)."""
    refs = load_references(paper)
    if experiment is not None:
        refs = {**refs, "claims": [c for c in refs["claims"] if c["experiment"] == experiment]}
    if not refs["claims"]:
        return ""
    rows = [{**r, "why / note": (r["why"] if r["status"] in NEEDS_REASON else r["note"]) or ""}
            for r in compare(refs, records)]
    return f"#### {paper}: paper vs ours\n\n" + markdown(rows, COLUMNS, digits=3)
