"""`python -m reproduce.report`: runs `llm_efficiency_bench.cli.report` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.report", run_name="__main__", alter_sys=True)
