"""Comparison against paper numbers: statuses and the reference files themselves."""

from __future__ import annotations

import pytest

from llm_efficiency_bench.core.paths import papers
from llm_efficiency_bench.core.references import REFERENCES_DIR, compare, load_references, reference_papers


def _rec(profile, **metrics):
    return {"experiment": "e", "profile": profile, "config": {"model": {"name": "m"}},
            "metrics": {k: {"value": v, "unit": "x", "direction": "lower"} for k, v in metrics.items()}}


REFS = {"claims": [
    {"id": "a", "claim": "c", "source": "T1", "experiment": "e", "metric": "m", "paper_value": 5.0,
     "tolerance": {"rel": 0.1}, "comparable_profiles": ["paper"], "shape": {"max": 1.05}},
    {"id": "b", "claim": "r", "source": "T2", "experiment": "e", "ratio": ["m", "n"], "paper_value": 2.0,
     "tolerance": {"abs": 0.1}, "comparable_profiles": []},
    {"id": "c", "claim": "never run", "source": "T3", "experiment": "other", "metric": "m", "paper_value": 1.0},
]}


def test_statuses():
    rows = {(r["id"], r["model / profile"].split(" / ")[1].split(" ")[0] if r["ours"] is not None else None): r
            for r in compare(REFS, [_rec("paper", m=5.2, n=2.6), _rec("cpu", m=1.06, n=0.5)])}
    assert rows[("a", "paper")]["status"] == "reproduced"
    assert rows[("a", "cpu")]["status"] == "not reproduced"  # shape max 1.05 violated
    assert rows[("b", "cpu")]["status"] == "not comparable"
    assert rows[("c", None)]["status"] == "not run on this machine"
    assert rows[("a", "paper")]["delta"] == pytest.approx(0.2)


def test_a_claim_whose_precondition_fails_is_not_comparable_with_that_reason():
    """`requires`: "flat over the stream" holds vacuously for a model that retrieves nothing; on such a run
    the dependent claim is not comparable, never shape reproduced."""
    refs = {"claims": [
        {"id": "retrieves", "claim": "retrieves in cache", "source": "T", "experiment": "e", "metric": "acc",
         "paper_value": 85.0, "shape": {"min": 50}},
        {"id": "flat", "claim": "flat over the stream", "source": "F", "experiment": "e", "metric": "drift",
         "paper_value": 0.0, "shape": {"min": -10, "max": 10}, "requires": "retrieves", "why": "w"},
    ]}
    rows = {r["id"]: r for r in compare(refs, [_rec("cpu", acc=3.0, drift=0.0)])}
    assert rows["flat"]["status"] == "not comparable"
    assert "`retrieves`" in rows["flat"]["why"] and "not reproduced" in rows["flat"]["why"]
    rows = {r["id"]: r for r in compare(refs, [_rec("cpu", acc=80.0, drift=0.0)])}
    assert rows["flat"]["status"] == "shape reproduced" and rows["flat"]["why"] == "w"
    bad = {"claims": [{**refs["claims"][1], "requires": "no_such_claim"}]}
    with pytest.raises(ValueError, match="no_such_claim"):
        compare(bad, [_rec("cpu", drift=0.0)])


def test_every_reference_file_but_the_tolerances_is_a_paper():
    names = {p.stem for p in REFERENCES_DIR.glob("*.yaml")}
    assert set(reference_papers()) == names - {"regression"}
    # every paper of the config tree, in their report_order
    assert reference_papers() == sorted(papers(), key=lambda p: load_references(p).get("report_order", 1_000))


@pytest.mark.parametrize("paper", reference_papers())
def test_reference_files_are_well_formed(paper):
    refs = load_references(paper)
    assert refs["paper"] == paper and refs["title"]
    ids = [c["id"] for c in refs["claims"]]
    assert len(ids) == len(set(ids))
    for c in refs["claims"]:
        assert c.get("tolerance") or c.get("shape"), c["id"]


def test_second_configuration_is_named_by_its_run_tag():
    """Two records of one experiment and profile (a `run_tag` configuration beside the default) give two rows
    that say which is which."""
    from llm_efficiency_bench.core.references import compare

    refs = {"claims": [{"id": "c", "claim": "x", "source": "s", "experiment": "bon", "metric": "m",
                        "paper_value": 1.0, "shape": {"min": 1.0}}]}
    rec = lambda tag: {"experiment": "bon", "profile": "cpu", "metrics": {"m": {"value": 2.0}},  # noqa: E731
                       "config": {"model": {"name": "tiny"}, "run_tag": tag}}
    rows = compare(refs, [rec(None), rec("policy_2000_steps")])
    assert [r["model / profile"].split(" (")[0] for r in rows] == ["tiny / cpu", "tiny [policy_2000_steps] / cpu"]
