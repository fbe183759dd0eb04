# Two commands on a fresh clone: `make report` and `make test`.
# Every target builds .venv itself; the stamp file re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: report test lint bench clean

report: $(STAMP)
	$(BIN)/jobqueue report $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -rxX $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check jobqueue tests examples
	$(BIN)/ruff format --check jobqueue tests examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/jobqueue bench $(ARGS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,postgres]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
