"""Where the suite reads data and keeps caches. Nothing machine-specific is hard-coded."""

from __future__ import annotations

import os
from pathlib import Path

from llm_efficiency_bench.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]  # a checkout: references/, results/, docs/
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the Hydra tree (package data)


# Papers kept outside the package: folders (separated by os.pathsep) each holding `configs/<paper>.yaml`
# (+ `configs/<paper>/experiment/`, ...) and `references/<paper>.yaml`; their code is found on sys.path.
PAPERS_PATH_ENV = "BENCH_PAPERS_PATH"


def paper_roots() -> list[tuple[Path, Path]]:
    """(config folder, references folder) of the suite, then of each folder in `BENCH_PAPERS_PATH`."""
    roots = [(CONFIG_DIR, REPO_ROOT / "references")]
    for d in os.environ.get(PAPERS_PATH_ENV, "").split(os.pathsep):
        if d.strip():
            roots.append((Path(d).expanduser().resolve() / "configs", Path(d).expanduser().resolve() / "references"))
    return roots


def papers() -> list[str]:
    """Every paper: a top config `<paper>.yaml` that says `paper: <paper>`, in the suite or beside it."""
    import yaml

    found = []
    for configs, _ in paper_roots():
        for p in sorted(configs.glob("*.yaml")):
            if p.stem not in found and (yaml.safe_load(p.read_text()) or {}).get("paper") == p.stem:
                found.append(p.stem)
    return found


def config_dir_of(paper: str) -> Path:
    """The config folder holding `<paper>.yaml` (the suite's when none does)."""
    return next((c for c, _ in paper_roots() if (c / f"{paper}.yaml").is_file()), CONFIG_DIR)


def references_dir_of(paper: str) -> Path:
    """The references folder holding `<paper>.yaml` (the suite's when none does)."""
    return next((r for _, r in paper_roots() if (r / f"{paper}.yaml").is_file()), REPO_ROOT / "references")


def cache_dir() -> Path:
    """Cache for converted and trained models (`BENCH_CACHE`, default `~/.cache/llm-efficiency-bench`)."""
    root = os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "llm-efficiency-bench"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(setting: str | None) -> Path:
    """Resolve the data directory from the `data_dir` setting or `BENCH_DATA_DIR`.

    Raises:
        ConfigError: when neither is set or the folder does not exist.
    """
    value = setting or os.environ.get("BENCH_DATA_DIR")
    if not value:
        raise ConfigError(
            "data_dir",
            "no data directory set: pass data_dir=<folder> or set BENCH_DATA_DIR "
            "(CI uses ../shared/data; `data=pg19` fetches PG19 through `datasets` on a machine with network)",
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError("data_dir", f"data directory {path} does not exist")
    return path
