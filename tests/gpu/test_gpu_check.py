"""`make gpu-check` on the CPU: the dry mode runs the real steps end to end on tiny random models (so the
check cannot rot); step limits, failure reporting and the wheels install are checked on their own."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llm_efficiency_bench.core.paths import REPO_ROOT
from tests.conftest import compose

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import gpu_check  # noqa: E402


@pytest.mark.e2e
def test_dry_run_writes_records_in_the_gpu_layout_and_a_summary(tmp_path):
    p = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry", "--results", str(tmp_path),
                        "--only", "fig10,eval,fourier"], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=600, env={**gpu_check._env([]), "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    for rel in ("streaming_llm/speed", "streaming_llm/eval_speed", "fourier_vlm/speed"):
        rec = json.loads((tmp_path / rel / "gpu_dry_cpu" / "record.json").read_text())
        assert rec["profile"] == "gpu_dry_cpu" and rec["config"]["model"]["random_weights"] is True
        timed = [m for k, m in rec["metrics"].items() if m["unit"] in ("ms", "tokens/s", "x")]
        assert timed and all("random weights: speed only" in m.get("note", "") for m in timed), rel
    ev = json.loads((tmp_path / "streaming_llm/eval_speed/gpu_dry_cpu/record.json").read_text())["metrics"]
    assert ev["eval_tok_s.chunked"]["value"] > 0 and ev["projected_s.sink_cache"]["value"] > 0
    assert ev["eval_tok_s.chunked_full_window"]["value"] > 0 and ev["nonfinite_nll.chunked"]["value"] == 0
    text = (tmp_path / "gpu_check_gpu_dry_cpu.md").read_text()
    assert "| claim | paper | ours | status |" in text and "31.2% faster generation" in text
    assert "| fig10 | ok |" in text and "| eval | ok |" in text and "| fourier | ok |" in text
    assert "token-by-token SinkCache tokens/s" in text and "DRY RUN" in text and "transformers 5." in text


def test_gpu_steps_time_the_paper_architectures():
    steps = {s.name: s for s in gpu_check.experiment_steps("python3", Path("/r"), "gpu_x", dry=False)}
    assert set(steps) == {"tests", "fig10", "eval", "fourier"}
    assert steps["tests"].argv[-3:] == ["-m", "cuda", "tests/gpu"]
    assert "model=llama2_7b_random" in steps["eval"].argv
    assert sum(s.timeout_s for s in steps.values()) <= 8 * 60 + 150  # the budget (470 s) caps the total anyway
    s = compose("streaming_llm", ["experiment=speed", "profile=gpu"])
    assert (s.model.name, s.device, s.dtype, max(s.experiment.cache_sizes)) == ("llama2_13b_random", "cuda",
                                                                                "float16", 4096)
    e = compose("streaming_llm", ["experiment=eval_speed", "profile=gpu", "model=llama2_7b_random"])
    assert (e.experiment.cache, e.experiment.n_sink, e.experiment.tokens) == (2048, 4, 65536)
    f = compose("fourier_vlm", ["experiment=speed", "profile=gpu"])
    assert (f.model.name, f.device, f.dtype) == ("llava15_7b_random", "cuda", "float16")


def test_a_slow_or_failing_step_is_reported_and_the_next_still_runs():
    import time

    env = gpu_check._env([])
    slow = gpu_check.run_step(gpu_check.Step("slow", "sleeps", [sys.executable, "-c", "import time; "
                                             "print('started', flush=True); time.sleep(30)"], 1.0), env,
                              time.monotonic() + 60)
    bad = gpu_check.run_step(gpu_check.Step("bad", "fails", [sys.executable, "-c", "raise SystemExit(3)"], 10),
                             env, time.monotonic() + 60)
    ok = gpu_check.run_step(gpu_check.Step("ok", "works", [sys.executable, "-c", "print('fine')"], 10), env,
                            time.monotonic() + 60)
    assert (slow.status, bad.status, ok.status) == ("timed out", "failed (rc 3)", "ok")
    assert slow.seconds < 10 and "started" in slow.tail and "fine" in ok.tail


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (module `gpucheck_demo`)."""
    w = folder / "gpucheck_demo-0.1-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr("gpucheck_demo/__init__.py", "VALUE = 42\n")
        z.writestr("gpucheck_demo-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: gpucheck-demo\nVersion: 0.1\n")
        z.writestr("gpucheck_demo-0.1.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("gpucheck_demo-0.1.dist-info/RECORD", "")
    return w


def test_wheels_install_into_the_target_folder_only(tmp_path, monkeypatch):
    import time

    pytest.importorskip("pip")
    wheels = tmp_path / ".whl"
    wheels.mkdir()
    _wheel(wheels)
    monkeypatch.setattr(gpu_check, "WHEELS", wheels)
    monkeypatch.setattr(gpu_check, "SITE", wheels / "site")
    step = gpu_check.install_wheels(sys.executable)
    assert "--no-index" in step.argv[2] and "--no-deps" in step.argv[2] and "--target" in step.argv[2]
    done = gpu_check.run_step(step, gpu_check._env([]), time.monotonic() + 120)
    assert done.status == "ok", done.out
    assert (wheels / "site" / "gpucheck_demo" / "__init__.py").exists()
    p = subprocess.run([sys.executable, "-c", "import gpucheck_demo; print(gpucheck_demo.VALUE)"],
                       env=gpu_check._env([wheels / "site"]), capture_output=True, text=True)
    assert p.stdout.strip() == "42"
    assert gpu_check.install_wheels(sys.executable) is not None and not any(wheels.glob("site/torch*"))
