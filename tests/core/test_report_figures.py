"""The report redraws every paper's figures from saved CSVs, survives broken ones, and writes the README block.

Records are built in tmp_path from small synthetic CSVs (the columns the experiments write); one test runs
the Fourier-VLM `flops` smoke experiment to check that a run and the report draw byte-identical figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from llm_efficiency_bench.fourier_vlm.flops import all_conventions
from llm_efficiency_bench.core.paths import papers
from llm_efficiency_bench.core.plots import DPI, FigureDataError, read_rows
from llm_efficiency_bench.core.records import Record, write_record
from llm_efficiency_bench.core.tables import write_csv
from llm_efficiency_bench.cli import report

MODEL = {"model": {"name": "tiny"}}


def _record(results: Path, paper: str, experiment: str, csvs: dict[str, list[dict]], config: dict | None = None,
            metrics: dict[str, float] | None = None, profile: str = "cpu") -> Path:
    """A record folder with the given CSVs (listed as artifacts) and a valid record.json."""
    run_dir = results / paper / experiment / profile
    for name, rows in csvs.items():
        write_csv(run_dir / name, rows)
    rec = Record(paper=paper, experiment=experiment, profile=profile, config={**MODEL, **(config or {})},
                 env={"device_name": "cpu: test machine (2 cores)", "packages": {"torch": "0.0-test"}},
                 artifacts={"csv": sorted(csvs)}, duration_s=90.0)
    for k, v in (metrics or {}).items():
        rec.add(k, v, "x", "higher")
    write_record(run_dir, rec)
    return run_dir


def _flops_rows() -> list[dict]:
    rows = []
    for model, scale in (("llava15_7b", 1.0), ("llava15_13b", 1.9)):
        for i, conv in enumerate(all_conventions((0,))):
            totals = {t: scale * (1e12 + (2 + i) * 1e10 * t) for t in (576, 256, 144, 64, 36)}
            rows += [{"model": model, "convention": conv.name, "image_tokens": t, "decode_tokens": 0,
                      "total": v, "reduction": 1 - v / totals[576]} for t, v in totals.items()]
    return rows


def _speed_csvs() -> dict[str, list[dict]]:
    tokens = (576, 144, 64)
    samples = [{"image_tokens": t, "rep": r, "ttft_ms": t / 3 + r, "e2e_ms": 400 + t / 2 + r, "decode_tok_s": 80 - t / 60,
                "prefill_ms": t / 4 + r, "e2e_cpu_ms": 800 + t + r} for t in tokens for r in range(4)]
    table = [{"image tokens": t, "e2e speedup": (400 + 288) / (400 + t / 2), "TTFT speedup": 576 / t,
              "e2e CPU-time speedup": 1376 / (800 + t)} for t in tokens]
    comp = [{"grid": f"{n}x{n}", "channels": 128, "k": n // 3, "dct ms": n / 50, "dct_dense ms": n / 70}
            for n in (24, 48, 96)]
    return {"speed.csv": table, "speed_samples.csv": samples, "compressor_time.csv": comp}


def _bon_rows() -> list[dict]:
    arms = {"confidence_prm": 8, "newline_prm": 6, "orm": 5, "majority": 4, "random": 0, "pass_at_n": 20,
            "confidence_prm_mean": 7}
    return [{"arm": a, "n": n, "seed": s, "accuracy": 30 + gain * (n.bit_length() - 1) / 4 + s}
            for a, gain in arms.items() for n in (1, 2, 4, 8, 16) for s in range(3)]


@pytest.fixture
def results(tmp_path) -> Path:
    """One synthetic record per figure-producing experiment of the three papers."""
    res = tmp_path / "results"
    _record(res, "streaming_llm", "ppl_sinks",
            {"table2.csv": [{"cache": c, "ppl": p} for c, p in (("0+1024", 21.9), ("1+1023", 14.2), ("4+1020", 14.2))]},
            metrics={"ppl.streaming.4+1020": 14.2})
    _record(res, "fourier_vlm", "flops", {"flops_long.csv": _flops_rows()},
            {"experiment": {"paper_convention": "llm_vit_proj_ffn2_prefill"}},
            metrics={"flops_reduction.64.llm_vit_proj_ffn2_prefill": 0.838})
    _record(res, "fourier_vlm", "speed", _speed_csvs(), {"experiment": {"batch": 1, "new_tokens": 8}},
            metrics={"e2e_speedup.64": 1.5})
    _record(res, "fourier_vlm", "lowpass",
            {"lowpass.csv": [{"method": m, "k": k, "tokens": k * k, "rel. L2 error": e / k, "energy kept":
                              1 - 0.1 / k if m == "dct" else None}
                             for m, e in (("dct", 1.0), ("avgpool", 1.2), ("drop", 1.6)) for k in (12, 8, 6)]},
            {"experiment": {"image": "dog.jpg"}, "fourier": {"base_side": 24}})
    _record(res, "adaptive_step", "bon", {"bon_long.csv": _bon_rows()}, {"task": {"name": "arith"}},
            metrics={"bon_acc.confidence_prm.16": 38.0, "bon_acc.newline_prm.16": 36.0})
    _record(res, "adaptive_step", "cost",
            {"split_token_types.csv": [{"token type": t, "share of all tokens": a, "share of split points": s,
                                        "over-representation": s / a} for t, a, s in
                                       (("digit", 40.0, 55.0), ("operator", 20.0, 30.0), ("word", 40.0, 15.0))]},
            {"task": {"name": "arith"}})
    return res


EXPECTED = {  # record folder -> figures its experiment's drawer must draw from the CSVs
    "streaming_llm/ppl_sinks/cpu": ["table2.png"],
    "fourier_vlm/flops/cpu": ["flops.png"],
    "fourier_vlm/speed/cpu": ["speed.png"],
    "fourier_vlm/lowpass/cpu": ["lowpass_error.png"],
    "adaptive_step/bon/cpu": ["bon_accuracy_vs_n.png"],
    "adaptive_step/cost/cpu": ["split_token_types.png"],
}


@pytest.mark.e2e
def test_report_redraws_every_papers_figures(results):
    out = results / "REPORT.md"
    text, problems = report.build(results, out)
    assert problems == []
    for folder, names in EXPECTED.items():
        for name in names:
            png = results / folder / name
            assert png.exists() and png.with_suffix(".pdf").exists(), png
            assert f"]({folder}/{name})" in text, f"{folder}/{name} not linked in the report"
            # the suite's style: every figure saved at the same dpi
            assert Image.open(png).info["dpi"][0] == pytest.approx(DPI, abs=1)


@pytest.mark.e2e
def test_every_streaming_llm_figure_is_redrawn_from_its_csvs(tmp_path):
    """Each experiment's drawer (`@experiment(figures=...)`, found through its YAML's `fn`) draws its figures
    from the record's CSVs."""
    from llm_efficiency_bench.core.experiment import declared

    res = tmp_path / "results"
    _record(res, "streaming_llm", "speed",
            {"fig10.csv": [{"cache": c, "recompute_ms": c / 10, "streaming_ms": 5.0, "speedup": c / 50,
                            "mem_recompute_mb": 700.0, "mem_streaming_mb": 690.0} for c in (256, 512)]})
    _record(res, "streaming_llm", "attention",
            {"attention_maps.csv": [{"layer": k, "query": q, "key": j, "weight": 1.0 / (q + 1), "sentences": 4}
                                    for k in (0, 1) for q in range(4) for j in range(q + 1)],
             "sink_share.csv": [{"layer": k, "share_token0_late": 0.1 * k, "share_token0_short_sentences": 0.2}
                                for k in range(3)]}, {"experiment": {"late_position": 256}})
    _record(res, "streaming_llm", "chat",
            {"transcript.csv": [{"round": r, "cache_len": min(64, 30 * r), "tokens_total": 30 * r, "rss_mb": 500.0}
                                for r in range(1, 5)]}, {"experiment": {"cache": 64, "n_sink": 4}})
    _record(res, "streaming_llm", "sink_pretrain",
            {"table3_long.csv": [{"variant": v, "n_sink": s, "ppl": 20.0 + s} for v in ("vanilla", "sink")
                                 for s in (0, 1, 4)],
             "sink_share_vs_steps.csv": [{"variant": v, "step": t, "share_median": 0.1} for v in ("vanilla", "sink")
                                         for t in (0, 10)]},
            {"experiment": {"cache": 32, "train": {"seq_len": 64}}})
    _record(res, "streaming_llm", "ppl_cache",
            {"table6.csv": [{"cache": c, "ppl": p} for c, p in (("4+252", 14.0), ("4+508", 13.1))]})
    expected = {"speed": ["fig10_latency_memory.png"], "chat": ["chat_memory.png"], "sink_pretrain": ["table3.png"],
                "attention": ["fig2_attention_maps.png", "sink_share_per_layer.png"], "ppl_cache": ["table6.png"]}
    for exp, names in expected.items():
        run_dir = res / "streaming_llm" / exp / "cpu"
        drawn = declared("streaming_llm", exp).figures(run_dir, json.loads((run_dir / "record.json").read_text()))
        assert sorted(p.name for p in drawn if p.suffix == ".png") == sorted(names)
    # a record older than attention_maps.csv still gets the figure it can draw, and no error
    (res / "streaming_llm/attention/cpu/attention_maps.csv").unlink()
    rec = json.loads((res / "streaming_llm/attention/cpu/record.json").read_text())
    assert [p.name for p in declared("streaming_llm", "attention").figures(res / "streaming_llm/attention/cpu", rec)] \
        == ["sink_share_per_layer.png", "sink_share_per_layer.pdf"]
    # eval_speed draws nothing (its table is the result), and a drawer never draws another experiment's figure
    assert declared("streaming_llm", "eval_speed").figures is None
    assert declared("streaming_llm", "ppl_sinks").figures(res / "streaming_llm/ppl_cache/cpu", {}) == []


@pytest.mark.e2e
def test_missing_and_corrupt_csvs_are_named_and_do_not_break_the_others(results):
    (results / "fourier_vlm/speed/cpu/speed_samples.csv").unlink()
    (results / "adaptive_step/bon/cpu/bon_long.csv").write_text("arm,n,seed,accuracy\nconfidence_prm,1,0,oops\n")
    (results / "adaptive_step/cost/cpu/split_token_types.csv").write_bytes(b"\xff\xfe\x00garbage")
    (results / "streaming_llm/ppl_sinks/cpu/table2.csv").write_text("cache,ppl\n0+1024\n")  # truncated row
    text, problems = report.build(results, results / "REPORT.md")
    joined = "\n".join(problems)
    assert "speed_samples.csv" in joined and "missing" in joined
    assert "bon_long.csv" in joined and "'oops'" in joined
    assert "split_token_types.csv" in joined and "not a readable CSV" in joined
    assert "table2.csv: line 2 has too few cells" in joined
    assert len(problems) == 4 and all(p in text for p in problems), "each problem is written in the report"
    for folder in ("fourier_vlm/flops/cpu", "fourier_vlm/lowpass/cpu"):  # the intact records still get figures
        for name in EXPECTED[folder]:
            assert (results / folder / name).exists()
            assert f"]({folder}/{name})" in text
    assert not (results / "fourier_vlm/speed/cpu/speed.png").exists()


@pytest.mark.e2e
def test_corrupt_record_is_listed_and_the_rest_reported(results):
    (results / "fourier_vlm/flops/cpu/record.json").write_text('{"schema_version": 1, "paper": ')
    text, problems = report.build(results, results / "REPORT.md")
    assert any("flops/cpu/record.json" in p for p in problems)
    assert "](adaptive_step/bon/cpu/bon_accuracy_vs_n.png)" in text


def test_read_rows_names_the_file_and_column(tmp_path):
    p = tmp_path / "x.csv"
    with pytest.raises(FigureDataError, match="x.csv: missing"):
        read_rows(p)
    p.write_text("a,b\n1,2\n")
    with pytest.raises(FigureDataError, match=r"missing column\(s\) 'c'"):
        read_rows(p, ["a", "c"])
    (row,) = read_rows(p)
    assert row.num("b") == 2.0
    with pytest.raises(FigureDataError, match="no column 'zz'"):
        row["zz"]
    p.write_text("a,b\n")
    with pytest.raises(FigureDataError, match="no data rows"):
        read_rows(p)


README = "# Title\n\nintro text\n\n<!-- results:start -->\nold block\n<!-- results:end -->\n\n## After\nkept *as is*\n"


@pytest.mark.e2e
def test_readme_block_is_rewritten_between_the_markers_only(results, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert report.main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    head, rest = text.split(report.README_START)
    block, tail = rest.split(report.README_END)
    assert head == README.split(report.README_START)[0]
    assert tail == README.split(report.README_END)[1]
    assert "old block" not in block
    assert "| claim | paper | ours (model) | verdict | why / note |" in block
    # headline rows: a measured claim shows our value and model, an unmeasured one says so
    assert "**AdaptiveStep**, Figs. 4-5: confidence-PRM >= newline-PRM at N = 16" in block
    assert "| 1.056 (tiny) | shape reproduced |" in block
    assert "| — | not run on this machine |" in block
    # run time of each experiment and profile, from env and duration_s
    assert "| Fourier-VLM | flops | cpu | 1.5 | cpu: test machine (2 cores), torch 0.0-test |" in block
    # key figures: relative links to files that exist
    links = [line.split("](")[1].rstrip(")") for line in block.splitlines() if line.startswith("![")]
    assert "results/adaptive_step/bon/cpu/bon_accuracy_vs_n.png" in links
    assert "results/fourier_vlm/flops/cpu/flops.png" in links
    assert all((readme.parent / link).exists() for link in links)
    # idempotent: a second run rewrites the same block
    report.main(["--results", str(results), "--readme", str(readme)])
    assert readme.read_text() == text


@pytest.mark.e2e
@pytest.mark.parametrize("bad", ["no markers\n", "<!-- results:end -->\n<!-- results:start -->\n",
                                 README + "<!-- results:start -->\n"])
def test_readme_without_one_ordered_block_is_refused_untouched(results, tmp_path, bad):
    readme = tmp_path / "README.md"
    readme.write_text(bad)
    with pytest.raises(SystemExit):
        report.update_readme(readme, results)
    assert readme.read_text() == bad


@pytest.mark.parametrize("paper", papers())
def test_headline_claims_and_key_figures_come_from_the_references(paper):
    from llm_efficiency_bench.core.references import load_references

    refs = load_references(paper)
    ranks = [int(c["headline"]) for c in refs["claims"] if c.get("headline")]
    assert ranks and sorted(ranks) == list(range(1, len(ranks) + 1)), "headline ranks are 1..n"
    rows = report.headline_rows(paper, [])
    assert len(rows) == len(ranks) and all(r["verdict"] == "not run on this machine" for r in rows)
    assert rows[0]["claim"].startswith(f"**{refs['title']}**")
    assert refs["key_figures"] and all({"experiment", "file", "caption"} <= set(f) for f in refs["key_figures"])


def test_papers_follow_report_order_and_include_unreferenced_ones():
    from llm_efficiency_bench.core.references import load_references

    assert report.papers_of([]) == sorted(papers(), key=lambda p: load_references(p).get("report_order", 1_000))
    extra = [(Path("x"), {"paper": "new_paper"})]
    assert report.papers_of(extra)[-1] == "new_paper" and report.title("new_paper") == "new_paper"


def test_paper_numbers_are_read_from_the_reference_files():
    from llm_efficiency_bench.core.references import paper_table, paper_value

    assert paper_value("fourier_vlm", "flops_reduction_64") == pytest.approx(0.838)
    assert paper_table("streaming_llm", "table3")["sink"][0] == 1235
    with pytest.raises(KeyError, match="no claim"):
        paper_value("fourier_vlm", "no_such_claim")
    # no copy of a paper number is left in the experiment code
    src = (Path(__file__).resolve().parents[2] / "llm_efficiency_bench").rglob("*.py")
    assert not [p for p in src if "0.838" in p.read_text()]


@pytest.mark.e2e
def test_report_profile_filter_and_missing_results_folder(tmp_path, capsys):
    results = tmp_path / "results"
    for profile in ("cpu", "smoke"):  # no CSVs: nothing to draw, only the records' sections
        _record(results, "fourier_vlm", "flops", {}, profile=profile)
    text, _ = report.build(results, results / "REPORT.md")  # default: cpu only
    assert "### flops / cpu" in text and "### flops / smoke" not in text
    text, _ = report.build(results, results / "REPORT.md", profile="smoke")
    assert "### flops / smoke" in text and "### flops / cpu" not in text
    assert report.main(["--results", str(tmp_path / "nope")]) == 2
    assert "--results" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


@pytest.mark.e2e
def test_run_and_report_draw_identical_figures(tmp_path):
    """One code path: the flops smoke run draws flops.png from its CSV; the report redraws the same bytes."""
    from llm_efficiency_bench.core.runner import run
    from tests.conftest import compose

    cfg = compose("fourier_vlm", ["experiment=flops", "profile=smoke", f"results_dir={tmp_path}",
                                  "experiment.crosscheck_tokens=[64]"])
    run_dir = run("fourier_vlm", cfg).parent
    rec = json.loads((run_dir / "record.json").read_text())
    assert {"flops.png", "flops.pdf"} <= set(rec["artifacts"]["figures"])
    from_run = (run_dir / "flops.png").read_bytes()
    (run_dir / "flops.png").unlink()
    _, problems = report.build(tmp_path, tmp_path / "REPORT.md", profile="smoke")
    assert problems == []
    assert (run_dir / "flops.png").read_bytes() == from_run


def test_tagged_runs_are_named_in_the_readme_headline_and_run_time():
    """Two configurations of one experiment (the second with a `run_tag`) are told apart in the README."""
    recs = [{"experiment": "bon", "config": {"model": {"name": "tiny"}}, "duration_s": 60.0},
            {"experiment": "bon", "config": {"model": {"name": "tiny"}, "run_tag": "policy_2000_steps"},
             "duration_s": 120.0}]
    assert [report._model(r) for r in recs] == ["tiny", "tiny [policy_2000_steps]"]
    assert report._run_time(recs) == "3.0 min: bon [policy_2000_steps] 2.0, bon 1.0"
