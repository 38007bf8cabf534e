"""Fourier-VLM harness.

    python -m reproduce.fourier_vlm experiment=flops profile=cpu
    python -m reproduce.fourier_vlm experiment=speed profile=smoke results_dir=/tmp/res
    python -m reproduce.fourier_vlm --list      # experiments, their claims and measured cost per profile
"""

from llm_efficiency_bench.cli.entry import paper_main

cli = paper_main("fourier_vlm")  # the console script `llm-efficiency-bench-fourier-vlm`

if __name__ == "__main__":
    cli()
