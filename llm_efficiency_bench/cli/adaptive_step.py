"""AdaptiveStep harness.

    python -m reproduce.adaptive_step experiment=bon profile=cpu
    python -m reproduce.adaptive_step experiment=cost profile=smoke results_dir=/tmp/res
    python -m reproduce.adaptive_step --list      # experiments, their claims and measured cost per profile
"""

from llm_efficiency_bench.cli.entry import paper_main

cli = paper_main("adaptive_step")  # the console script `llm-efficiency-bench-adaptive-step`

if __name__ == "__main__":
    cli()
