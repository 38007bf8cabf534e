"""`python -m toy experiment=<name> profile=<smoke|cpu>`: the toy paper's entry point (`--list` lists it)."""
from llm_efficiency_bench.cli.entry import paper_main

paper_main("toy")()
