# Two commands for a fresh machine (Python 3.11+):
#   make demo   install into .venv and run `spanwatch demo`
#   make test   install the test extras into .venv and run the test suite
# Tests use the embedded broker unless SPANWATCH_TEST_KAFKA=host:port names a real one.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint install install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

demo: install
	$(BIN)/spanwatch demo

test: install-test
	$(BIN)/python -m pytest

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy
