"""`python -m reproduce.export_mlflow`: runs `llm_efficiency_bench.cli.export_mlflow` as the main module."""

import runpy

if __name__ == "__main__":
    runpy.run_module("llm_efficiency_bench.cli.export_mlflow", run_name="__main__", alter_sys=True)
