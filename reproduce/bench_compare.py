"""`python -m reproduce.bench_compare`: runs `llm_efficiency_bench.cli.bench_compare` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.bench_compare", run_name="__main__", alter_sys=True)
