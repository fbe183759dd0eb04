# Two commands on a fresh clone: `make report` and `make test`.
# Every target builds .venv itself and installs only what it needs: the report
# needs the package alone, the tests add the `test` and `prometheus` extras, lint
# adds `dev` too.
# Each stamp file re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: report test lint bench docs clean

report: $(VENV)/.report
	$(BIN)/jobqueue report $(ARGS)

test: $(VENV)/.test
	$(BIN)/python -m pytest -rsxX $(ARGS)

lint: $(VENV)/.lint
	$(BIN)/ruff check jobqueue tests examples
	$(BIN)/ruff format --check jobqueue tests examples
	$(BIN)/mypy

bench: $(VENV)/.report
	$(BIN)/jobqueue bench $(ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.report: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The tests run final on PostgreSQL too, and scrape the Prometheus collector:
# they need the postgres and prometheus extras.
$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,prometheus]'
	touch $@

# mypy checks the tests too, so lint needs the test extras beside the dev tools.
$(VENV)/.lint: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,prometheus,dev]'
	touch $@

# The figures of docs/, redrawn from the committed JSON; matplotlib is the `docs` extra.
# report.svg too: --from-json draws the saved report again and measures nothing,
# so the figures the pages quote from report.json stay as they are.
docs: $(VENV)/.docs
	$(BIN)/python -m jobqueue.lab.docs.plots --docs docs
	$(BIN)/jobqueue report --from-json docs/report.json --svg docs/report.svg > /dev/null
	@echo "wrote docs/report.svg"

$(VENV)/.docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
