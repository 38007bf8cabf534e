"""Run lifecycle shared by every paper: experiment resolution, run context, record writing, comparison.

An experiment is a function `fn(ctx: RunContext) -> None` named by its config: each experiment YAML says
`fn: llm_efficiency_bench.<paper>.<module>:<function>`, and the runner resolves that name (no registry, no import of a
paper package by convention). It adds metrics, tables, CSVs and figures through `ctx`; the runner captures
the resolved config and the environment and writes `results/<paper>/<experiment>/<profile>/record.json`.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from llm_efficiency_bench.core import env as env_mod
from llm_efficiency_bench.core import sandbox
from llm_efficiency_bench.core.cache import to_plain
from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import resolve_experiment, spec_of, specialise
from llm_efficiency_bench.core.records import Record, write_record
from llm_efficiency_bench.core.run_folder import CHECKPOINT, RunFolder, run_dir
from llm_efficiency_bench.core.tables import write_csv, write_markdown

Experiment = Callable[["RunContext"], None]


@dataclass
class RunContext:
    """What an experiment gets: the config, its output folder, and writers that register artifacts."""

    cfg: Any
    paper: str
    experiment: str
    profile: str
    out_dir: Path  # where this run writes: a staging folder, published whole when the run succeeds
    record: Record
    log_lines: list[str] = field(default_factory=list)
    # Seconds the earlier legs of a resumed run took (an experiment resuming from its checkpoint sets it);
    # the record's duration_s is this leg plus these, so a resumed run reports the time of all its work.
    resumed_seconds: float = 0.0
    folder: RunFolder | None = None  # the run folder the staging folder is published into

    @property
    def checkpoint_dir(self) -> Path:
        """Resume state lives in the run folder itself, so it survives a failed or interrupted run."""
        return self.folder.checkpoint_dir if self.folder else self.out_dir / CHECKPOINT

    def log(self, msg: str) -> None:
        line = f"[{self.paper}/{self.experiment}/{self.profile}] {msg}"
        print(line, flush=True)
        self.log_lines.append(line)

    def metric(self, name: str, value: float, unit: str, direction: str, note: str = "",
               stderr: float | None = None, kind: str | None = None) -> None:
        """Record a metric; `kind` (quality / timing / count / memory) says how a regression check treats
        it, inferred from the unit when omitted (`llm_efficiency_bench.core.records.infer_kind`)."""
        self.record.add(name, value, unit, direction, note, stderr, kind)  # type: ignore[arg-type]

    def _artifact(self, kind: str, path: Path) -> None:
        rel = str(path.relative_to(self.out_dir))
        lst = self.record.artifacts.setdefault(kind, [])
        if rel not in lst:
            lst.append(rel)

    def table(self, name: str, title: str, rows: Sequence[dict[str, Any]], notes: Iterable[str] = (),
              columns: Sequence[str] | None = None, digits: int = 2) -> Path:
        """Write `<name>.md` (and the same rows as `<name>.csv`)."""
        p = write_markdown(self.out_dir / f"{name}.md", title, rows, notes, columns, digits)
        self._artifact("tables", p)
        self.csv(name, rows, columns)
        return p

    def csv(self, name: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
        p = write_csv(self.out_dir / f"{name}.csv", rows, columns)
        self._artifact("csv", p)
        return p

    def artifact(self, kind: str, path: Path) -> Path:
        """Register a file of `out_dir` written by other means (e.g. a tool's own output) under `kind`."""
        self._artifact(kind, Path(path))
        return Path(path)

    def figures(self, paths) -> None:
        """Register figure files drawn elsewhere (e.g. from this run's CSVs)."""
        for p in paths:
            self._artifact("figures", Path(p))

    def figure(self, name: str, fig) -> None:
        from llm_efficiency_bench.core.plots import save

        for p in save(fig, self.out_dir / f"{name}.png"):
            self._artifact("figures", p)


def _plain(cfg: Any) -> dict[str, Any]:
    """The resolved config as stored in a record, with machine paths made portable: `data_dir` and
    `results_dir` are recorded relative to the repository (e.g. ../shared/data, results), never as this
    machine's absolute paths."""
    import os

    from llm_efficiency_bench.core.paths import REPO_ROOT

    plain = to_plain(cfg)
    for key in ("data_dir", "results_dir"):
        if isinstance(plain, dict) and plain.get(key):
            plain[key] = os.path.relpath(str(plain[key]), REPO_ROOT)
    return plain  # type: ignore[return-value]


def run(paper: str, cfg: Any, overrides: Sequence[str] | None = None) -> Path:
    """Run the experiment `cfg.experiment.name` of `paper` and publish its run folder. Returns the record path.

    Every setting is validated first. The run writes into a staging folder inside its run folder; only a
    run that finishes publishes (record, tables, CSVs and figures together, the earlier run moved whole to
    `history/`) and clears its resume state (`.checkpoint/`); a failed one leaves the published run
    untouched, its partial output in `.failed-run/` and its resume state in place.
    With `skip_if_current=true` a run whose record was made by the same code and config is not repeated.
    `overrides` are the command-line overrides (default: Hydra's, when Hydra runs the job); an
    `experiment.<key>=...` among them keeps its value over the profile's size (`core/experiment.py`).
    """
    from llm_efficiency_bench.core.validate import validate

    fn = resolve_experiment(cfg.experiment.get("fn"))
    specialise(cfg, hydra_overrides() if overrides is None else overrides, fn)
    name = cfg.experiment.name
    validate(paper, cfg)  # before anything is built: a bad setting costs seconds, never a run

    import numpy as np
    import torch

    profile = cfg.profile.name
    out = run_dir(cfg.results_dir, paper, name, profile)
    tag = run_tag(cfg)
    if tag:
        out = out / tag
    folder = RunFolder(out)
    if cfg.get("skip_if_current"):
        done = folder.current(_plain(cfg))
        if done is not None:
            print(f"[{paper}/{name}/{profile}] up to date (same code and config): {done}; FORCE=1 reruns", flush=True)
            return done
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    seed = int(cfg.get("seed", 0))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    staging = folder.new_staging()
    record = Record(paper=paper, experiment=name, profile=profile)
    ctx = RunContext(cfg, paper, name, profile, staging, record, folder=folder)
    ctx.log(f"start -> {out}")
    # The environment (git sha included) is taken when the run starts: it names the code that ran.
    record.env = env_mod.capture(str(cfg.get("device", "cpu")))
    t0, ran = time.time(), sandbox.usage()
    try:
        fn(ctx)
        draw = spec_of(fn).figures
        if draw is not None:  # the figures the report redraws, drawn by the same code from this run's CSVs
            from llm_efficiency_bench.core.plots import run_view

            ctx.figures(draw(ctx.out_dir, run_view(ctx)))
        record.duration_s = round(time.time() - t0 + float(ctx.resumed_seconds), 1)
        ran = {k: n - ran.get(k, 0) for k, n in sandbox.usage().items() if n > ran.get(k, 0)}
        if ran:  # generated code ran: the record says how it was contained ("UNSAFE: not isolated" or bwrap)
            record.env["code_execution"] = ran
        record.config = _plain(cfg)
        write_record(staging, record)
        text = _comparison(paper, record, name)
        if text:
            (staging / "comparison.md").write_text(text)
    except BaseException:  # KeyboardInterrupt too: nothing half-written is ever published
        failed = folder.discard(staging)
        # stdout: stderr keeps the one error line the entry point prints
        print(f"[{paper}/{name}/{profile}] run failed: nothing published; partial output in {failed}", flush=True)
        raise
    path = folder.publish(staging)  # clears the resume state too: a rerun measures again
    ctx.log(f"record written: {path} ({record.duration_s:.0f} s)")
    if text:
        print(text)
    return path


def _comparison(paper: str, record: Record, name: str) -> str:
    try:
        from llm_efficiency_bench.core.references import comparison_markdown

        return comparison_markdown(paper, [record.to_dict()], experiment=name) or ""
    except FileNotFoundError:  # no references/<paper>.yaml yet
        return ""


def hydra_overrides() -> list[str]:
    """The command-line overrides of the Hydra job running now ([] outside one)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        return []


def run_tag(cfg: Any) -> str | None:
    """Sub-folder for one job of a sweep, so jobs never share a record.

    `run_tag=<name>` sets it; under Hydra multirun it defaults to the job's overrides (e.g.
    `model=pythia_12b,experiment.cache=2048`) minus experiment/profile, which already name the folder.
    """
    tag = cfg.get("run_tag")
    if tag:
        return _safe(str(tag))
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    parts = [o.lstrip("+") for o in hc.overrides.task if not o.split("=")[0].lstrip("+~") in
             ("experiment", "profile", "results_dir", "run_tag", "hydra.launcher.n_jobs")]
    return _safe(",".join(sorted(parts))) or None


def _safe(tag: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.,=+" else "_" for c in tag)[:120]


def hydra_entry(paper: str, cfg: Any) -> None:
    """Body of `reproduce.<paper>`: run, turning ConfigError into one clear line and exit code 2."""
    try:
        run(paper, cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
