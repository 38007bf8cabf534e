"""`python -m reproduce.streaming_llm`: runs `llm_efficiency_bench.cli.streaming_llm` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.streaming_llm", run_name="__main__", alter_sys=True)
