"""`python -m reproduce.check`: runs `llm_efficiency_bench.cli.check` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.check", run_name="__main__", alter_sys=True)
