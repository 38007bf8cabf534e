"""StreamingLLM harness.

    python -m reproduce.streaming_llm experiment=ppl_table1 profile=cpu
    python -m reproduce.streaming_llm experiment=ppl_4m profile=smoke results_dir=/tmp/res
"""

import hydra

from bench.core.runner import guard_overrides, hydra_entry


@hydra.main(config_path="../configs", config_name="streaming_llm", version_base="1.3")
def main(cfg) -> None:
    hydra_entry("streaming_llm", cfg)


if __name__ == "__main__":
    guard_overrides("streaming_llm")
    main()
