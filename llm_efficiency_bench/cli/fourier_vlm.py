"""Fourier-VLM harness.

    python -m reproduce.fourier_vlm experiment=flops profile=cpu
    python -m reproduce.fourier_vlm experiment=speed profile=smoke results_dir=/tmp/res
    python -m reproduce.fourier_vlm --list      # experiments, their claims and measured cost per profile
"""

import hydra

from llm_efficiency_bench.core.runner import guard_overrides, hydra_entry
from llm_efficiency_bench.cli.listing import list_if_asked


@hydra.main(config_path="../configs", config_name="fourier_vlm", version_base="1.3")
def main(cfg) -> None:
    hydra_entry("fourier_vlm", cfg)


def cli() -> None:
    """The console script `llm-efficiency-bench-fourier-vlm` (same arguments as `python -m`)."""
    list_if_asked("fourier_vlm")
    guard_overrides("fourier_vlm")
    main()


if __name__ == "__main__":
    cli()
