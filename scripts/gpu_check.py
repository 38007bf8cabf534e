"""`make gpu-check`: the prepared GPU-runner check. Runs from the source tree, nothing installed.

    PYTHONPATH=. python3 scripts/gpu_check.py            # on a GPU runner (H100/H200 class): <= 8 minutes
    PYTHONPATH=. python3 scripts/gpu_check.py --dry      # on any CPU: the same steps on tiny random models

Steps, each a subprocess with its own time limit (and all of them inside `--budget-s`), so a slow or
failing step is reported and the rest still run:

1. wheels   if `.whl/` holds wheels (`make gpu-wheels`), install them with `pip --no-index --no-deps
            --target .whl/site` and put that folder on PYTHONPATH (the machine's torch is never touched)
2. gpu      the device, its memory, torch / transformers / hydra versions, every module the check imports
3. tests    `pytest -m cuda tests/gpu` (the CUDA-marked tests)
4. fig10    StreamingLLM Fig. 10: `experiment=speed` on Llama-2-13B (random weights, fp16)
5. eval     the exact chunked evaluator vs token-by-token SinkCache, 64K tokens, Llama-2-7B, 4+2044
6. fourier  Fourier-VLM generation speed on LLaVA-1.5-7B (random weights, fp16)

Records go through the normal runner to `<results>/<paper>/<experiment>/gpu_<device>/record.json`; the
summary (claim | paper | ours) is printed and written to `<results>/gpu_check_gpu_<device>.md`.
Exit code 0 when every step passed, 1 otherwise. Only the standard library is imported at the top: the
check must be able to say what is missing on a bare machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
SITE = WHEELS / "site"
# Imported by the steps below (checked in step 2 so a missing one is named, not a traceback later).
MODULES = ("torch", "transformers", "hydra", "omegaconf", "yaml", "numpy", "matplotlib", "tqdm", "pytest")


@dataclass
class Step:
    name: str
    what: str
    argv: list[str]
    timeout_s: float
    rc: int | None = None
    seconds: float = 0.0
    tail: str = ""
    out: str = field(default="", repr=False)

    @property
    def status(self) -> str:
        if self.rc is None:
            return "skipped"
        return {0: "ok", 124: "timed out"}.get(self.rc, f"failed (rc {self.rc})")


def _env(extra_path: list[Path]) -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(REPO), *map(str, extra_path)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the hub
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def run_step(step: Step, env: dict[str, str], deadline: float) -> Step:
    """Run one step with min(its limit, what is left of the budget); never raises."""
    limit = max(1.0, min(step.timeout_s, deadline - time.monotonic()))
    shown = " ".join(a if len(a) < 120 else "<script>" for a in step.argv)
    print(f"\n== {step.name}: {step.what} (limit {limit:.0f} s)\n   $ {shown}", flush=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run(step.argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=limit)
        step.rc, step.out = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        step.rc = 124
        step.out = (e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout) or ""
    except OSError as e:
        step.rc, step.out = 127, str(e)
    step.seconds = time.monotonic() - t0
    step.tail = "\n".join(step.out.strip().splitlines()[-15:])
    print(step.tail, flush=True)
    print(f"-- {step.name}: {step.status} in {step.seconds:.0f} s", flush=True)
    return step


# Distribution name (as in a wheel's file name) -> the module it provides; the wheels `make gpu-wheels` fetches.
WHEEL_MODULES = {"hydra_core": "hydra", "omegaconf": "omegaconf", "antlr4_python3_runtime": "antlr4",
                 "pyyaml": "yaml", "PyYAML": "yaml"}

INSTALL = r"""
import importlib.util, subprocess, sys
site, wheels = sys.argv[1], sys.argv[2:]
bad = []
for w in wheels:  # one by one: a wheel for another Python (e.g. PyYAML cp312 on 3.11) must not block the rest
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade",
                        "--target", site, w], capture_output=True, text=True)
    if p.returncode == 0:
        print("installed", w.rsplit("/", 1)[-1])
        continue
    dist = w.rsplit("/", 1)[-1].split("-")[0]
    mod = WHEEL_MODULES.get(dist, dist)
    if importlib.util.find_spec(mod) is not None:
        print(f"not installed {w} ({p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}); "
              f"the machine's own {mod} is used")
    else:
        bad.append(w)
        print(f"FAILED {w}: {p.stderr.strip()[-300:]}")
sys.exit(1 if bad else 0)
"""


def install_wheels(python: str) -> Step | None:
    """Step 1: the wheels `make gpu-wheels` fetched, into `.whl/site` (never into the machine's site-packages).

    `--no-index --no-deps --target`: nothing is fetched, nothing else is resolved, and the machine's torch
    and transformers stay as they are; the steps then find `.whl/site` on PYTHONPATH.
    """
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        return None
    stamp = SITE / ".installed"
    names = "\n".join(w.name for w in wheels)
    if stamp.exists() and stamp.read_text() == names:
        return Step("wheels", f"{len(wheels)} wheels already in .whl/site", [], 0, rc=0)
    code = f"WHEEL_MODULES = {WHEEL_MODULES!r}\n" + INSTALL
    return Step("wheels", f"install {len(wheels)} wheels from .whl/ (--no-index --no-deps --target .whl/site)",
                [python, "-c", code, str(SITE), *map(str, wheels)], 120)


PREFLIGHT = r"""
import importlib, json, sys
mods = {}
for m in MODULES:
    try:
        mods[m] = getattr(importlib.import_module(m), "__version__", "?")
    except Exception as e:
        mods[m] = None
        print(f"missing module {m}: {type(e).__name__}: {e}")
import torch
info = {"python": sys.version.split()[0], "modules": mods, "cuda": torch.cuda.is_available()}
if info["cuda"]:
    p = torch.cuda.get_device_properties(0)
    info.update(name=torch.cuda.get_device_name(0), memory_gib=round(p.total_memory / 2**30, 1),
                capability=f"{p.major}.{p.minor}", cuda_runtime=torch.version.cuda)
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); [x @ x for _ in range(10)]; e.record(); e.synchronize()
    info["fp16_matmul_tflops"] = round(10 * 2 * 4096**3 / (s.elapsed_time(e) / 1e3) / 1e12, 1)
print("GPUCHECK " + json.dumps(info))
missing = [m for m, v in mods.items() if v is None]
sys.exit(3 if missing else (0 if info["cuda"] or DRY else 4))
"""


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "unknown"


def experiment_steps(python: str, results: Path, profile: str, dry: bool) -> list[Step]:
    """Steps 3-6. `--dry` keeps every step and code path but swaps in tiny random models on the CPU."""
    common = [f"profile.name={profile}", f"results_dir={results}"]
    tiny_s = ["device=cpu", "dtype=float32", "model=llama_tiny_random"] if dry else []
    tests = [python, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "-m", "cuda", "tests/gpu"]
    return [
        Step("tests", "CUDA-marked tests (pytest -m cuda tests/gpu)", tests, 150),
        Step("fig10", "StreamingLLM Fig. 10 speed: streaming vs sliding window with recompute",
             [python, "-m", "reproduce.streaming_llm", "experiment=speed", "profile=gpu", *common, *tiny_s,
              *(["experiment.cache_sizes=[32,64]", "experiment.tokens=2"] if dry else [])], 150),
        Step("eval", "exact chunked evaluator vs token-by-token SinkCache, projected 4M-token time",
             [python, "-m", "reproduce.streaming_llm", "experiment=eval_speed", "profile=gpu", *common,
              *(tiny_s + ["experiment.tokens=1200", "eval.chunk=256", "experiment.sink_steps=4",
                          "experiment.cache=256"] if dry else ["model=llama2_7b_random"])], 120),
        Step("fourier", "Fourier-VLM generation speed at 576 tokens vs each budget",
             [python, "-m", "reproduce.fourier_vlm", "experiment=speed", "profile=gpu", *common,
              *(["device=cpu", "dtype=float32", "model=llava_tiny_random", "experiment.new_tokens=3", "experiment.repeats=1",
                 "experiment.warmup=0", "experiment.dct_grids=[24]", "fourier.budgets=[8]"] if dry else [])], 180),
    ]


def _records(results: Path, profile: str) -> list[dict]:
    out = []
    for p in sorted(results.glob(f"*/*/{profile}/record.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError) as e:
            print(f"unreadable record {p}: {e}")
    return out


def _fmt(x: object) -> str:
    if isinstance(x, (int, float)):
        return f"{x:,.3g}" if abs(float(x)) < 1000 else f"{x:,.0f}"
    return "—" if x is None else str(x)


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def summary(results: Path, profile: str, device: str, steps: list[Step], info: dict | None = None,
            since: str = "", dry: bool = False) -> str:
    """Markdown: the steps, then claim | paper | ours from the records this run wrote (created >= `since`)."""
    sys.path.insert(0, str(REPO))
    info = info or {}
    mods = info.get("modules") or {}
    lines = [f"## gpu-check on {device} ({profile})", "",
             f"python {info.get('python', '?')}, torch {mods.get('torch', '?')}, transformers "
             f"{mods.get('transformers', '?')}, hydra {mods.get('hydra', '?')}"
             + (f"; {info['memory_gib']} GiB, compute capability {info['capability']}, CUDA {info['cuda_runtime']}, "
                f"fp16 matmul {info['fp16_matmul_tflops']} TFLOP/s" if info.get("cuda") else ""),
             "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.0f} |" for s in steps]
    records = [r for r in _records(results, profile) if str(r.get("created", "")) >= since]
    rows = []
    try:
        from llm_efficiency_bench.core.references import compare, load_references

        for paper in sorted({str(r.get("paper")) for r in records}):  # the papers this check's records belong to
            recs = [r for r in records if r.get("paper") == paper]
            if recs:
                for row in compare(load_references(paper), recs):
                    if row.get("ours") is not None:
                        rows.append((f"{paper}: {row['claim']}", row["paper"], row["ours"], row["status"]))
    except Exception as e:  # the summary must never hide the steps' outcome
        lines.append(f"\n(reference comparison unavailable: {type(e).__name__}: {e})")
    ev = next((r for r in records if r.get("experiment") == "eval_speed"), None)
    if ev:
        m = {k: v.get("value") for k, v in ev["metrics"].items()}
        e = ev.get("config", {}).get("experiment", {})
        pol = f"{e.get('n_sink')}+{int(e.get('cache', 0)) - int(e.get('n_sink', 0))}"
        rows += [(f"streaming_llm: exact chunked evaluator tokens/s ({pol}, full window)", None,
                  m.get("eval_tok_s.chunked_full_window"), "measured"),
                 ("streaming_llm: token-by-token SinkCache tokens/s (the paper's Fig. 5 loop)", None,
                  m.get("eval_tok_s.sink_cache"), "measured"),
                 ("streaming_llm: chunked / token-by-token speed-up", None,
                  m.get("eval_speedup.chunked_over_sink_cache"), "measured"),
                 ("streaming_llm: projected hours for Fig. 5's 4M tokens, chunked / token-by-token", None,
                  f"{_fmt(_hours(m.get('projected_s.chunked')))} / {_fmt(_hours(m.get('projected_s.sink_cache')))}",
                  "projected")]
    for r in records:
        mem = {k: v.get("value") for k, v in r["metrics"].items() if k.startswith("peak_mem_mb.")}
        if r.get("experiment") == "speed" and r.get("paper") == "streaming_llm" and mem:
            big = max(int(k.rsplit(".", 1)[1]) for k in mem)
            lat = {k: v.get("value") for k, v in r["metrics"].items() if k.startswith("latency_ms.")}
            rows.append((f"streaming_llm: per-token latency at cache {big}, recompute / streaming (ms)", None,
                         f"{_fmt(lat.get(f'latency_ms.recompute.{big}'))} / "
                         f"{_fmt(lat.get(f'latency_ms.streaming.{big}'))}", "measured"))
            rows.append((f"streaming_llm: peak memory at cache {big}, recompute / streaming (MiB)", None,
                         f"{_fmt(mem.get(f'peak_mem_mb.recompute.{big}'))} / "
                         f"{_fmt(mem.get(f'peak_mem_mb.streaming.{big}'))}", "measured"))
    lines += ["", "| claim | paper | ours | status |", "|---|---|---|---|"]
    lines += [f"| {c} | {_fmt(p)} | {_fmt(o)} | {s} |" for c, p, o, s in rows] or ["| (no records) | | | |"]
    what = ("DRY RUN: tiny random models on the CPU; these numbers test the check, they measure no claim"
            if dry else "All models: the papers' architectures with seeded random weights (random weights: speed only)")
    lines += ["", f"{what}; records under "
              + ", ".join(sorted({f"{r['paper']}/{r['experiment']}/{profile}" for r in records}))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry", action="store_true", help="tiny random models on the CPU (CI: the check cannot rot)")
    ap.add_argument("--results", type=Path, default=None,
                    help="records folder (default: results/, or a temporary folder with --dry)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="time for all steps together (default 470 s; 1200 s with --dry on a slow shared CPU)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the steps (the machine's torch)")
    ap.add_argument("--only", default=None, help="comma-separated step names to run (default: all)")
    a = ap.parse_args(argv)
    deadline = time.monotonic() + (a.budget_s or (1200.0 if a.dry else 470.0))
    # Records older than this run (an earlier check into the same folder) stay out of the summary.
    since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results = a.results or (Path(tempfile.mkdtemp(prefix="gpu_check_")) if a.dry else REPO / "results")
    steps: list[Step] = []
    wheel_step = install_wheels(a.python)
    if wheel_step is not None:
        steps.append(wheel_step if not wheel_step.argv else run_step(wheel_step, _env([]), deadline))
        if wheel_step.rc == 0 and wheel_step.argv:
            SITE.mkdir(parents=True, exist_ok=True)
            (SITE / ".installed").write_text("\n".join(w.name for w in sorted(WHEELS.glob("*.whl"))))
    env = _env([SITE] if SITE.is_dir() else [])
    code = f"MODULES = {MODULES!r}\nDRY = {a.dry!r}\n" + PREFLIGHT
    pre = run_step(Step("gpu", "device and modules", [a.python, "-c", code], 90), env, deadline)
    steps.append(pre)
    info = {}
    for line in pre.out.splitlines():
        if line.startswith("GPUCHECK "):
            info = json.loads(line[len("GPUCHECK "):])
    if not a.dry and not info.get("cuda"):
        print("\nno CUDA device visible: nothing to measure (use --dry to exercise the check on a CPU)")
        return 1
    device = info.get("name", "dry cpu") if not a.dry else "dry cpu"
    profile = f"gpu_{slug(device)}"
    only = set(a.only.split(",")) if a.only else None
    for step in experiment_steps(a.python, results, profile, a.dry):
        if only is not None and step.name not in only:
            continue
        if time.monotonic() >= deadline:
            steps.append(step)  # rc None: skipped, out of budget
            continue
        steps.append(run_step(step, env, deadline))
    text = summary(results, profile, device, steps, info, since, a.dry)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"gpu_check_{profile}.md").write_text(text)
    print("\n" + text)
    return 0 if all(s.rc == 0 for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
