"""Benchmark and reproduction suite for three LLM-efficiency papers.

`bench.core` holds what the papers share (models, data, records, references, tables, plots);
`bench.<paper>` holds each paper's method code and experiments.
"""
