"""AdaptiveStep harness.

    python -m reproduce.adaptive_step experiment=bon profile=cpu
    python -m reproduce.adaptive_step experiment=cost profile=smoke results_dir=/tmp/res
    python -m reproduce.adaptive_step --list      # experiments, their claims and measured cost per profile
"""

import hydra

from llm_efficiency_bench.core.runner import guard_overrides, hydra_entry
from llm_efficiency_bench.cli.listing import list_if_asked


@hydra.main(config_path="../configs", config_name="adaptive_step", version_base="1.3")
def main(cfg) -> None:
    hydra_entry("adaptive_step", cfg)


def cli() -> None:
    """The console script `llm-efficiency-bench-adaptive-step` (same arguments as `python -m`)."""
    list_if_asked("adaptive_step")
    guard_overrides("adaptive_step")
    main()


if __name__ == "__main__":
    cli()
