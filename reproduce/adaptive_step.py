"""AdaptiveStep harness.

    python -m reproduce.adaptive_step experiment=bon profile=cpu
    python -m reproduce.adaptive_step experiment=cost profile=smoke results_dir=/tmp/res
    python -m reproduce.adaptive_step --list      # experiments, their claims and measured cost per profile
"""

import hydra

from bench.core.runner import guard_overrides, hydra_entry
from reproduce.listing import list_if_asked


@hydra.main(config_path="../configs", config_name="adaptive_step", version_base="1.3")
def main(cfg) -> None:
    hydra_entry("adaptive_step", cfg)


if __name__ == "__main__":
    list_if_asked("adaptive_step")
    guard_overrides("adaptive_step")
    main()
