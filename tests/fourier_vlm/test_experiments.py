"""End to end on the smoke profile: compose the real config, run each experiment, check records and errors."""

from __future__ import annotations

import pytest

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.records import read_record
from llm_efficiency_bench.core.runner import run
from tests.conftest import compose


def _cfg(tmp_path, experiment: str, extra=()):
    return compose("fourier_vlm", [f"experiment={experiment}", "profile=smoke", f"results_dir={tmp_path}", *extra])


def _check(rec, names):
    for name in names:
        m = rec["metrics"][name]
        assert m["value"] is not None and m["unit"], name


@pytest.mark.e2e
def test_flops_smoke(tmp_path):
    rec = read_record(run("fourier_vlm", _cfg(tmp_path, "flops")))
    _check(rec, ["flops.576", "flops.64", "flops_reduction.64", "flops_reduction.64.llm_vit_proj_ffn2_prefill",
                 "flops_reduction.64.llm_ffn3_prefill_decode", "flops_reduction_13b.64",
                 "flops_crosscheck.max_rel_err"])
    assert abs(rec["metrics"]["flops_reduction.64"]["value"] - 0.838) < 0.003
    assert rec["metrics"]["flops_crosscheck.max_rel_err"]["value"] < 0.01
    assert "flops_conventions.md" in rec["artifacts"]["tables"]
    assert {"flops.png", "flops.pdf"} <= set(rec["artifacts"]["figures"])
    text = (tmp_path / "fourier_vlm/flops/smoke/flops_match.md").read_text()
    assert "**" not in text and "llm_vit_proj_ffn2_prefill" in text.splitlines()[4]


@pytest.mark.e2e
def test_speed_smoke(tmp_path):
    cfg = _cfg(tmp_path, "speed", ["fourier.budgets=[12,6]", "experiment.dct_grids=[24]", "experiment.repeats=1"])
    rec = read_record(run("fourier_vlm", cfg))
    for t in (576, 144, 36):
        _check(rec, [f"prefill_ms.{t}", f"ttft_ms.{t}", f"decode_tok_s.{t}", f"e2e_ms.{t}"])
    _check(rec, ["e2e_speedup.144", "e2e_speedup.36", "e2e_cpu_speedup.36", "compress_ms.dct.24",
                 "compress_ms.dct_dense.24"])
    assert "e2e_speedup.576" not in rec["metrics"]


@pytest.mark.e2e
def test_lowpass_smoke(tmp_path, data_dir):
    rec = read_record(run("fourier_vlm", _cfg(tmp_path, "lowpass", ["fourier.budgets=[12,6]"])))
    m = rec["metrics"]
    # Parseval: the DCT's reconstruction error is exactly the energy it dropped
    for t in (144, 36):
        assert m[f"recon_rel_err.dct.{t}"]["value"] == pytest.approx((1 - m[f"energy_kept.{t}"]["value"]) ** 0.5,
                                                                    rel=1e-3)
    assert m["energy_kept.144"]["value"] > m["energy_kept.36"]["value"]
    assert "lowpass.png" in rec["artifacts"]["figures"]


@pytest.mark.parametrize("experiment,extra,setting", [
    ("flops", ["fourier.budgets=[30]"], "fourier.budgets"),  # flops tabulates fourier.budgets
    ("flops", ["fourier.budgets=[7.5]"], "fourier.budgets"),
    ("flops", ["experiment.paper_convention=llm_ffn5_prefill"], "experiment.conventions"),
    ("speed", ["fourier.budgets=[30]"], "fourier.budgets"),
    ("speed", ["fourier.method=wavelet"], "fourier.method"),
])
def test_bad_settings_are_named(tmp_path, experiment, extra, setting):
    shrink = {"flops": ["experiment.crosscheck_tokens=[64]"],
              "speed": ["experiment.repeats=1", "experiment.dct_grids=[24]"]}[experiment]
    cfg = _cfg(tmp_path, experiment, extra + shrink)
    if setting is None:
        run("fourier_vlm", cfg)
        return
    with pytest.raises(ConfigError) as e:
        run("fourier_vlm", cfg)
    assert e.value.setting == setting
