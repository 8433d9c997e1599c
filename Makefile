# `make test` and `make demo` create (or reuse) .venv and install from this repo's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo quickstart install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first: the CPU wheel on disk; otherwise a dependency pulls a multi-GB CUDA build.
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The real thing: embedded real-text corpus, tiny GPT-2 proxies on the CPU, SQLite study.
demo: $(STAMP)
	$(BIN)/optuna-autoscale demo

# The same pipeline on a simulated 7-domain landscape (about a minute).
quickstart: $(STAMP)
	$(BIN)/python examples/quickstart.py

clean:
	rm -rf $(VENV) .pytest_cache autoscale-demo.db
