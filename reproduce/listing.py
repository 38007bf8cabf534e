"""`python -m reproduce.listing`: runs `llm_efficiency_bench.cli.listing` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.listing", run_name="__main__", alter_sys=True)
