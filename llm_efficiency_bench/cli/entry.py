"""The entry point every paper shares: `python -m llm_efficiency_bench.cli.<paper> experiment=<name> ...`.

A paper's CLI module is `main = paper_main("<paper>")`; a paper kept outside the package passes its own
config folder (whose top config names the suite's tree in `hydra.searchpath`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.paths import config_dir_of


def paper_main(paper: str, config_dir: Path | None = None) -> Callable[[], None]:
    """The console-script function of one paper: `--list`, the checked overrides, then Hydra and the run."""
    import hydra

    from llm_efficiency_bench.core.runner import hydra_entry

    config_dir = Path(config_dir or config_dir_of(paper)).resolve()

    @hydra.main(config_path=str(config_dir), config_name=paper, version_base="1.3")
    def _hydra_main(cfg) -> None:
        hydra_entry(paper, cfg)

    def main() -> None:
        from llm_efficiency_bench.cli.listing import list_if_asked
        from llm_efficiency_bench.core.overrides import prepare

        list_if_asked(paper, config_dir=config_dir)
        argv = sys.argv[1:]
        # An override holds `=` (or deletes with `~`); flags and their values (`--cfg job`) pass as they are.
        at = [i for i, a in enumerate(argv) if not a.startswith("-") and ("=" in a or a.startswith("~"))]
        try:
            checked = prepare(paper, [argv[i] for i in at], config_dir)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        for i, a in zip(at, checked):
            argv[i] = a
        sys.argv = [sys.argv[0], *argv]
        _hydra_main()

    return main
