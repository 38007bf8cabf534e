"""`python -m reproduce.bench_record`: runs `llm_efficiency_bench.cli.bench_record` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.bench_record", run_name="__main__", alter_sys=True)
