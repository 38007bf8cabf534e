"""`python -m reproduce.adaptive_step`: runs `llm_efficiency_bench.cli.adaptive_step` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.adaptive_step", run_name="__main__", alter_sys=True)
