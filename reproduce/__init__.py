"""`python -m reproduce.<name>` from a checkout: the same commands as `llm_efficiency_bench.cli.<name>`.

    python -m reproduce.<paper> experiment=<name> profile=<smoke|cpu|paper>
    python -m reproduce.report

This folder is not installed; an installed suite has the console scripts `llm-efficiency-bench-<name>`.
"""
