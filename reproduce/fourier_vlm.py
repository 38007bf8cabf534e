"""`python -m reproduce.fourier_vlm`: runs `llm_efficiency_bench.cli.fourier_vlm` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.fourier_vlm", run_name="__main__", alter_sys=True)
