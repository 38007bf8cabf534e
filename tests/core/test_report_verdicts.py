"""One headline run per claim, the verdict summary with reasons, and the CLI edges around the report:
`report --results` naming the profiles it found, `--list`, and offline hub loading failing once with a hint."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llm_efficiency_bench.core.records import Record, write_record
from llm_efficiency_bench.core.references import compare, verdicts
from llm_efficiency_bench.cli import report
from llm_efficiency_bench.cli.listing import list_if_asked, listing

CLAIM = {"id": "c", "claim": "x", "source": "Fig. 4", "experiment": "bon", "metric": "m", "paper_value": 1.0,
         "shape": {"min": 1.0}, "why": "the miniature verifier reads uncertainty"}


def _rec(tag: str | None, value: float, profile: str = "cpu") -> dict:
    return {"paper": "adaptive_step", "experiment": "bon", "profile": profile, "metrics": {"m": {"value": value}},
            "config": {"model": {"name": "tiny"}, "run_tag": tag}, "duration_s": 60.0}


def _write(results: Path, rec: dict, figure: bool = False) -> Path:
    run_dir = results / rec["paper"] / rec["experiment"] / rec["profile"]
    if rec["config"].get("run_tag"):
        run_dir = run_dir / rec["config"]["run_tag"]
    r = Record(paper=rec["paper"], experiment=rec["experiment"], profile=rec["profile"], config=rec["config"],
               env={"device_name": "cpu: test (2 cores)"}, duration_s=rec["duration_s"])
    for k, v in rec["metrics"].items():
        r.add(k, v["value"], "x", "higher")
    write_record(run_dir, r)
    if figure:
        (run_dir / "bon_accuracy_vs_n.png").write_bytes(b"png")
    return run_dir


def test_the_headline_run_answers_the_claim_whatever_the_folder_order():
    """A tagged configuration that sorts first (`aaa/` before `record.json`) does not become the headline."""
    refs = {"claims": [CLAIM]}
    recs = [_rec("aaa_sorted_first", 0.5), _rec(None, 1.3)]
    (row,) = verdicts(refs, recs)
    assert row["ours"] == 1.3 and row["status"] == "shape reproduced"
    rows = compare(refs, recs)  # the full comparison keeps both, headline first
    assert [r["headline"] for r in rows] == [True, False] and [r["ours"] for r in rows] == [1.3, 0.5]
    # a claim may name another configuration as its headline run
    (row,) = verdicts({"claims": [{**CLAIM, "headline_run": "aaa_sorted_first"}]}, recs)
    assert row["ours"] == 0.5 and row["status"] == "not reproduced"


@pytest.mark.e2e
def test_readme_headline_and_key_figure_come_from_the_headline_run(tmp_path):
    results = tmp_path / "results"
    tagged_dir = _write(results, _rec("aaa_sorted_first", 0.5), figure=True)
    default_dir = _write(results, _rec(None, 1.3), figure=True)
    records = report.load_records(results)[0]
    assert [p.parent for p, _ in records][0] == tagged_dir  # the folder order that misled the README
    png = report.key_figure(records, "adaptive_step", {"experiment": "bon", "file": "bon_accuracy_vs_n.png"})
    assert png == default_dir / "bon_accuracy_vs_n.png"
    section = report.readme_section(results, base=tmp_path)
    assert "aaa_sorted_first" not in section


@pytest.mark.e2e
def test_verdict_summary_counts_each_claim_once_and_gives_reasons(tmp_path):
    results = tmp_path / "results"
    _write(results, _rec("aaa_sorted_first", 2.0))
    records = report.load_records(results)[0]
    text = "\n".join(report.verdict_summary(records, "cpu"))
    assert "**not comparable**" in text and "shape condition" in text  # the words defined beside the table
    row = next(line for line in text.splitlines() if line.startswith("| AdaptiveStep |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert sum(int(c) for c in cells[1:-1]) == int(cells[-1])  # every claim counted once
    # every not-reproduced / not-comparable claim of the committed records has a reason
    committed = report.load_records(Path(__file__).resolve().parents[2] / "results", "cpu")[0]
    assert "no reason recorded" not in "\n".join(report.verdict_summary(committed, "cpu"))


def test_missing_reason_is_named():
    (row,) = verdicts({"claims": [{**CLAIM, "why": None}]}, [_rec(None, 0.5)])
    assert "add `why`" in report._reason(row, "adaptive_step", {})


def test_report_names_the_profiles_it_found(tmp_path, capsys):
    results = tmp_path / "results"
    _write(results, _rec(None, 1.3, profile="smoke"))
    assert report.main(["--results", str(results), "--out", str(tmp_path / "R.md")]) == 0
    err = capsys.readouterr().err
    assert "no `cpu` records" in err and "found profiles: smoke" in err and "--profile" in err


def test_list_prints_experiments_claims_and_measured_cost(tmp_path, capsys):
    results = tmp_path / "results"
    _write(results, _rec(None, 1.3))
    text = listing("adaptive_step", results)
    assert "bon:" in text and "shape_prm_over_random_16" in text
    assert "measured: cpu 1.0 min on cpu: test (2 cores)" in text
    assert "tvd:" in text and f"measured: no record under {results}" in text
    with pytest.raises(SystemExit) as e:
        list_if_asked("adaptive_step", ["--list", "--results", str(results)])
    assert e.value.code == 0 and "bon:" in capsys.readouterr().out
    assert list_if_asked("adaptive_step", ["experiment=bon"]) is None  # no --list: Hydra runs as usual


@pytest.mark.parametrize("offline", ["env", "no_route"])
def test_offline_hub_model_fails_once_fast_with_a_working_hint(monkeypatch, offline, capsys):
    from omegaconf import OmegaConf

    from llm_efficiency_bench.core import models
    from llm_efficiency_bench.core.errors import ConfigError

    if offline == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    cfg = OmegaConf.create({"name": "gated", "source": "hub", "hub_id": "no-such-org/no-such-model-xyz"})
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"model\.source=local \+model\.path=") as e:
        models.load_model(cfg)
    assert time.perf_counter() - t0 < 20
    assert e.value.__cause__ is None  # one error, not a chain of retries
    assert "retry" not in capsys.readouterr().err.lower()


def test_the_hint_loads_a_local_folder(tmp_path):
    """What the hint says works: a hub model config with `source=local` and an added `path`."""
    from omegaconf import OmegaConf
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models as tok_models

    from llm_efficiency_bench.core.models import load_model

    folder = tmp_path / "m"
    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(folder)
    tok = Tokenizer(tok_models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder)
    cfg = OmegaConf.create({"name": "llama2_7b", "source": "hub", "hub_id": "meta-llama/Llama-2-7b-hf"})
    OmegaConf.update(cfg, "source", "local")
    OmegaConf.update(cfg, "path", str(folder), force_add=True)  # `+model.path=<folder>`
    assert load_model(cfg).model.config.hidden_size == 16


@pytest.mark.e2e
def test_bench_block_is_filled_when_the_module_exists_and_left_alone_otherwise(tmp_path, monkeypatch, capsys):
    import sys
    import types

    results = tmp_path / "results"
    _write(results, _rec(None, 1.3))
    readme = tmp_path / "README.md"
    body = ("# T\n<!-- results:start -->\n<!-- results:end -->\n## Speed ratios (`make bench`)\n"
            "<!-- bench:start -->\nold\n<!-- bench:end -->\ntail\n")
    readme.write_text(body)
    monkeypatch.setitem(sys.modules, "llm_efficiency_bench.cli.bench_record", None)  # not importable
    report.update_readme(readme, results)
    assert "<!-- bench:start -->\nold\n<!-- bench:end -->" in readme.read_text()
    assert "not importable" in capsys.readouterr().out
    fake = types.ModuleType("llm_efficiency_bench.cli.bench_record")
    fake.bench_table_markdown = lambda results_dir: f"| ratio | value |\n|---|---|\n| x | {results_dir.name} |\n"
    monkeypatch.setitem(sys.modules, "llm_efficiency_bench.cli.bench_record", fake)
    report.update_readme(readme, results)
    text = readme.read_text()
    assert "| x | results |" in text and "\nold\n" not in text and text.endswith("<!-- bench:end -->\ntail\n")
