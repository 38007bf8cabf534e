"""Benchmark and reproduction suite for three LLM-efficiency papers.

`llm_efficiency_bench.core` holds what the papers share (models, data, records, references, tables, plots);
`llm_efficiency_bench.<paper>` holds each paper's method code and experiments.
"""
