# smesurvival — set-up commands that work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null

# The reference study on the built-in (synthetic) cohort -> ./smesurvival-report/
demo: $(BIN)/python
	$(BIN)/python -m pip install -e . >/dev/null
	$(BIN)/smesurvival demo --out smesurvival-report

# Installs the test extras (no system packages are needed yet) and runs lint, types and tests.
test: $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]' >/dev/null
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(BIN)/python
	$(BIN)/python -m pip install -e '.[test,bench]' >/dev/null
	$(BIN)/python bench/verdict_power.py

clean:
	rm -rf $(VENV) smesurvival-report .pytest_cache .mypy_cache .ruff_cache
