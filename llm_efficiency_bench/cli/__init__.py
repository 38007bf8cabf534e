"""Command-line entry points: one per paper (`streaming_llm`, `fourier_vlm`, `adaptive_step`), the report
(`report`), the regression gate (`check`), the micro-benchmark tools (`bench_compare`, `bench_record`) and the
experiment listing (`listing`). Each is a console script of the distribution (`llm-efficiency-bench-<name>`)
and runs as `python -m llm_efficiency_bench.cli.<name>`; a checkout also has `python -m reproduce.<name>`."""
