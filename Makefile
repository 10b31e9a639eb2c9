# fsnorm: every target sets itself up (venv + install) on a fresh machine.
#
# PYTHON: the interpreter for the venv. Debian's /usr/bin/python3 is built with PGO+LTO and runs fsnorm's hot
# loops about 1.5x faster than an unoptimized pyenv build, so it is preferred when it is 3.11 or newer.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	  2>/dev/null && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The modules setup.py compiles (mypyc, and the C extensions): an edit to one of them reinstalls (recompiles)
# before the next target.
COMPILED_SRCS := $(shell grep -oE '"normalizer/[a-z_/]*\.(py|c|h)"' setup.py | tr -d '"')

.PHONY: demo test lint typecheck unit bench bench-full soak fuzz clean
FUZZ_SECONDS ?= 300
ORACLE_SECONDS ?= 600
SOAK_MINUTES ?= 10

# Install output stays clean: setuptools' editable build prints a boxed UserWarning about editable installs on
# every install, and a pip configured with local extra indexes warns once per package they lack; neither says
# anything about this project. pipefail keeps pip's own exit status.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PIP_FILTER := 2>&1 | { grep -v "^WARNING: Location 'file:.*' is ignored" || true; }

$(STAMP): pyproject.toml setup.py $(COMPILED_SRCS)
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11 with venv/ensurepip (apt-get install python3-venv)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(PIP_FILTER)
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install -q -e '.[dev,bench]' $(PIP_FILTER)
	@$(BIN)/python -c 'from normalizer import _compiled; _compiled.install_note()'
	@rm -f $(VENV)/.installed-*
	@touch $@

## demo: watch a temp tree while a built-in workload renames, moves and writes; print records + summary
demo: $(STAMP)
	$(BIN)/fsnorm demo

## test: lint, strict type check, then the whole test suite (real kernel; run as root for the sysctl tests)
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check normalizer tests benchmarks fuzz

typecheck: $(STAMP)
	$(BIN)/mypy --strict normalizer

## unit: the tests against the compiled hot path (where it was built), then the core, replay and golden tests
## against the pure-Python one (FSNORM_PURE=1); one line-coverage report of normalizer/ for both runs (CLI
## subprocesses included; see pyproject). tests/test_compiled.py compares the two paths record for record.
PURE_TESTS := tests/test_matcher.py tests/test_normalize.py tests/test_properties.py tests/test_golden.py \
	tests/test_capture.py tests/test_records.py tests/test_fanotify_normalize.py tests/test_fuzz_corpus.py \
	tests/test_compiled.py
unit: $(STAMP)
	$(BIN)/pytest -q --cov=normalizer --cov-report=
	FSNORM_PURE=1 $(BIN)/pytest -q --cov=normalizer --cov-append --cov-report=term $(PURE_TESTS)

## bench: quick benchmark configuration (a few minutes); bench-full: the full one. Both end with fsnorm stats'
## read speed beside replay's and its peak memory on millions of events (benchmarks/bench_stats.py)
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick
	$(BIN)/python -m benchmarks.bench_net --quick --json benchmarks/results/net-quick.json
	$(BIN)/python -m benchmarks.bench_stats --quick
	$(BIN)/python -m benchmarks.bench_records --quick --json benchmarks/results/records-quick.json
	$(BIN)/python -m benchmarks.bench_files --siblings 5000 --trials 2

bench-full: $(STAMP)
	$(BIN)/python -m benchmarks.run --full
	$(BIN)/python -m benchmarks.bench_net --full --json benchmarks/results/net-full.json
	$(BIN)/python -m benchmarks.bench_stats --events 1000000 --memory-events 10000000
	$(BIN)/python -m benchmarks.bench_records --json benchmarks/results/records-full.json

## soak: 10 minutes of mixed storm through the live source, slow and fast consumer (SOAK_MINUTES=N)
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --minutes $(SOAK_MINUTES)

## fuzz: the atheris fuzzers (capture reader, normalizer, wire protocol) for FUZZ_SECONDS each, side by side; then the
## real-kernel oracle (tests/test_oracle.py) for ORACLE_SECONDS per backend, fresh programs all along
fuzz: $(STAMP)
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install -q -e '.[fuzz]' $(PIP_FILTER)
	PYTHON=$(BIN)/python bash fuzz/run.sh $(FUZZ_SECONDS)
	ORACLE_SECONDS=$(ORACLE_SECONDS) ORACLE_EXAMPLES=100 ORACLE_MAX_OPS=30 $(BIN)/pytest -q -s -p no:cacheprovider \
	  tests/test_oracle.py -k test_oracle_programs

clean:
	rm -rf $(VENV) build dist *.egg-info normalizer/_build_info.json .mypy_cache .ruff_cache .pytest_cache .hypothesis .coverage .coverage.*
	find normalizer -name '*.so' -delete
