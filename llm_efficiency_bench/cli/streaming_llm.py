"""StreamingLLM harness.

    python -m reproduce.streaming_llm experiment=ppl_table1 profile=cpu
    python -m reproduce.streaming_llm experiment=ppl_4m profile=smoke results_dir=/tmp/res
    python -m reproduce.streaming_llm --list      # experiments, their claims and measured cost per profile
"""

from llm_efficiency_bench.cli.entry import paper_main

cli = paper_main("streaming_llm")  # the console script `llm-efficiency-bench-streaming-llm`

if __name__ == "__main__":
    cli()
