"""StreamingLLM harness.

    python -m reproduce.streaming_llm experiment=ppl_table1 profile=cpu
    python -m reproduce.streaming_llm experiment=ppl_4m profile=smoke results_dir=/tmp/res
    python -m reproduce.streaming_llm --list      # experiments, their claims and measured cost per profile
"""

import hydra

from bench.core.runner import guard_overrides, hydra_entry
from reproduce.listing import list_if_asked


@hydra.main(config_path="../configs", config_name="streaming_llm", version_base="1.3")
def main(cfg) -> None:
    hydra_entry("streaming_llm", cfg)


if __name__ == "__main__":
    list_if_asked("streaming_llm")
    guard_overrides("streaming_llm")
    main()
