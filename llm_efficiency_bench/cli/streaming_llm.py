"""StreamingLLM harness.

    python -m reproduce.streaming_llm experiment=ppl_table1 profile=cpu
    python -m reproduce.streaming_llm experiment=ppl_4m profile=smoke results_dir=/tmp/res
    python -m reproduce.streaming_llm --list      # experiments, their claims and measured cost per profile
"""

import hydra

from llm_efficiency_bench.core.runner import guard_overrides, hydra_entry
from llm_efficiency_bench.cli.listing import list_if_asked


@hydra.main(config_path="../configs", config_name="streaming_llm", version_base="1.3")
def main(cfg) -> None:
    hydra_entry("streaming_llm", cfg)


def cli() -> None:
    """The console script `llm-efficiency-bench-streaming-llm` (same arguments as `python -m`)."""
    list_if_asked("streaming_llm")
    guard_overrides("streaming_llm")
    main()


if __name__ == "__main__":
    cli()
