"""End to end: compose the real config (smoke profile, shrunk) and run the `bon`, `cost` and `tvd` experiments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "llm_efficiency_bench" / "configs"
SHRINK = ["model.train.steps=60", "model.train.questions=500", "policy.eval_questions=8",
          "samples.prm_questions=6", "samples.prm_samples=4", "samples.test_questions=6", "samples.test_samples=4",
          "labels.rollouts=2", "pipeline.max_new=40", "prm.epochs=1", "pipeline.progress=false",
          "samples.val_questions=4", "samples.val_samples=4", "select.variants.early_stop.epochs=2",
          "select.more_questions=8"]
# each experiment's own sizes, shrunk like the pipeline's
SHRINK_EXPERIMENT = {"bon": ["experiment.n=[1,2,4]", "experiment.seeds=3"], "tvd": ["experiment.questions=2"]}


def _cfg(exp: str, tmp_path: Path, extra: list[str] = ()):
    from tests.conftest import compose

    return compose("adaptive_step", [f"experiment={exp}", "profile=smoke", f"results_dir={tmp_path}", *SHRINK,
                                     *SHRINK_EXPERIMENT.get(exp, []), *extra])


@pytest.mark.e2e
def test_smoke_pipeline_end_to_end(tmp_path, monkeypatch):
    from llm_efficiency_bench.core.runner import run

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    rec = json.loads(run("adaptive_step", _cfg("bon", tmp_path)).read_text())
    m = rec["metrics"]
    for arm in ("confidence_prm", "newline_prm", "orm", "majority", "random", "pass_at_n"):
        for n in (1, 2, 4):
            assert f"bon_acc.{arm}.{n}" in m
    # all arms pick the single candidate at N = 1; nothing beats the oracle
    v1 = {a: m[f"bon_acc.{a}.1"]["value"] for a in ("confidence_prm", "newline_prm", "orm", "random", "pass_at_n")}
    assert max(v1.values()) - min(v1.values()) < 1e-9
    for a in ("confidence_prm", "newline_prm", "orm", "majority", "random"):
        assert m[f"bon_acc.{a}.4"]["value"] <= m["bon_acc.pass_at_n.4"]["value"] + 1e-9
    # the oracle: the exact step checker as an arm, a PRM on its labels, its labels vs the MC labels
    for arm in ("oracle", "oracle_prm"):
        for n in (1, 2, 4):
            assert m[f"bon_acc.{arm}.{n}"]["value"] <= m[f"bon_acc.pass_at_n.{n}"]["value"] + 1e-9
    for split in ("confidence", "newline"):
        for kind in ("hard", "soft"):
            assert 0 <= m[f"labels.{split}.{kind}.agreement"]["value"] <= 100
    out = tmp_path / "adaptive_step" / "bon" / "smoke"
    assert (out / "bon.md").exists() and (out / "bon_accuracy_vs_n.png").exists()
    assert (out / "label_quality.csv").exists()
    # the recipe chosen on validation questions, the verifiers diagnosed there, intervals per arm and N
    sel = (out / "prm_selection.csv").read_text()
    variants = ("base", "pair", "soft", "early_stop", "more_data", "more_data_soft")
    assert all(v in sel for v in variants) and "prm_questions=8" in sel
    assert rec["extra"]["prm_recipe"]["variant"] in variants
    auc = m["select.chosen.val_within_auc"]["value"]  # null: no validation question had both right and wrong
    assert auc is None or 0 <= auc <= 1
    assert "oracle_arith" in (out / "verifiers_val.csv").read_text()
    import csv

    ci = list(csv.DictReader((out / "bon_ci.csv").open()))
    assert ci and all(float(r["ci_lo"]) <= float(r["mean"]) + 1e-9 <= float(r["ci_hi"]) + 2e-9 for r in ci)
    assert m["bon_acc.confidence_prm.4"]["stderr"] is not None
    stages = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "adaptive_step").iterdir())
    assert {"policy", "samples_prm", "samples_test", "division", "labels_confidence", "prm_orm", "prm_oracle"} <= set(stages)

    # cost reuses the cached policy / samples and adds the random split
    rec = json.loads(run("adaptive_step", _cfg("cost", tmp_path)).read_text())
    m = rec["metrics"]
    for sp in ("confidence", "newline", "random"):
        # K = 2 rollouts per non-closing marker, 6 questions x 4 samples = 24 solutions
        want = 2 * (m[f"steps_per_solution.{sp}"]["value"] - 1) * 24
        assert m[f"rollouts.{sp}"]["value"] == pytest.approx(want)
        assert m[f"steps_per_solution.{sp}"]["value"] >= 1
    # random split has as many interior markers as confidence split, hence as many rollouts
    assert m["rollouts.random"]["value"] <= m["rollouts.confidence"]["value"]
    assert "ratio.rollouts.confidence_over_newline" in m

    rec = json.loads(run("adaptive_step", _cfg("tvd", tmp_path)).read_text())
    m = rec["metrics"]
    assert {"acc.greedy", "acc.tvd", "prm_calls"} <= set(m)
    assert m["prm_calls"]["value"] % 8 == 0   # top-8 candidates per intervention

    # lm-eval on the pipeline's own test questions with the cached policy: same questions, same greedy
    # decoding, so the two accuracies agree (up to padding numerics: at most one question apart)
    rec = json.loads(run("adaptive_step", _cfg("greedy", tmp_path)).read_text())
    m = rec["metrics"]
    assert "greedy_acc.tiny_policy.bench_synthetic" in m
    assert abs(m["greedy_acc.tiny_policy.pipeline_minus_lm_eval"]["value"]) <= 100 / 8 + 1e-9
    assert "policy-" in str(sorted(p.name for p in (tmp_path / "cache" / "adaptive_step").iterdir()))


def test_paper_profile_composes_and_refuses_to_run(tmp_path):
    from llm_efficiency_bench.core.errors import ConfigError
    from llm_efficiency_bench.core.runner import run
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="adaptive_step", overrides=["experiment=bon", "profile=paper",
                                                              f"results_dir={tmp_path}"])
    assert cfg.model.hub_id == "meta-math/MetaMath-Mistral-7B"
    assert cfg.released.prms.asprm_m == "Lux0926/ASPRM-M"
    with pytest.raises(ConfigError):
        run("adaptive_step", cfg)


@pytest.mark.e2e
def test_chosen_data_variant_feeds_every_arm(tmp_path, monkeypatch):
    """A `data` variant (more PRM-data questions) that wins the selection is the PRM data of every arm."""
    from llm_efficiency_bench.core.runner import run

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    from omegaconf import open_dict

    cfg = _cfg("bon", tmp_path, ["oracle.prm=false"])
    with open_dict(cfg):
        cfg.select.variants = {"more": {"data": {"prm_questions": 8}}}
    rec = json.loads(run("adaptive_step", cfg).read_text())
    assert rec["extra"]["prm_recipe"]["variant"] == "more"
    assert rec["extra"]["prm_recipe"]["data"] == {"prm_questions": 8}
    # every PRM was trained on the 8-question data (8 x 4 solutions), none on the profile's 6 questions
    infos = [json.loads((p / "done.json").read_text()) for p in (tmp_path / "cache" / "adaptive_step").iterdir()
             if p.name.startswith("prm_") and p.is_dir() and (p / "done.json").exists()]
    assert infos and all(i["examples"] == 32 for i in infos)
