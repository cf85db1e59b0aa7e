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

# Installs the test, Spark and web extras and the system packages the tests drive: Java (the
# Spark engine), Debian's Chromium (the browser tests; never a browser download) and pdflatex
# with booktabs (the LaTeX tables are compiled). Each is installed with apt-get only when missing.
SYSTEM_PACKAGES = java:default-jre-headless chromium:chromium pdflatex:texlive-latex-base \
	pdflatex:texlive-latex-recommended

test: $(BIN)/python
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "test: installing$$missing"; \
	    (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	      --no-install-recommends $$missing >/dev/null) \
	      || { echo "test: apt-get could not install$$missing"; exit 1; }; \
	  else echo "test: apt-get is unavailable; these are needed:$$missing"; exit 1; fi; \
	fi
	$(BIN)/python -m pip install -e '.[test,spark,web]' >/dev/null
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest

# Benchmarks against the libraries a user would otherwise pick, in the same run. bench/cox.py
# also times R's survival and bench/scale.py Spark local[2]: R and Java are installed here with
# apt-get when missing (each part is skipped, with a message, where apt-get is unavailable or fails).
bench: $(BIN)/python
	$(BIN)/python -m pip install -e '.[test,bench,web,spark]' >/dev/null
	@if ! command -v java >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	      --no-install-recommends default-jre-headless >/dev/null) \
	      || echo "bench: could not install Java (apt-get failed); bench/scale.py will skip Spark"; \
	  else echo "bench: apt-get is unavailable; bench/scale.py will skip Spark"; fi; \
	fi
	@# lifelines pins pandas<3 although it runs on pandas 3: install it without its pins
	$(BIN)/python -m pip install --no-deps 'lifelines>=0.27,<1' 'autograd>=1.5' 'autograd-gamma>=0.3' >/dev/null
	@if ! command -v Rscript >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	      --no-install-recommends r-base-core r-cran-survival >/dev/null) \
	      || echo "bench: could not install R (apt-get failed); bench/cox.py will skip R"; \
	  else echo "bench: apt-get is unavailable; bench/cox.py will skip R"; fi; \
	fi
	$(BIN)/python bench/verdict_power.py
	$(BIN)/python bench/cox.py
	$(BIN)/python bench/recovery.py
	$(BIN)/python bench/bootstrap.py
	$(BIN)/python bench/coverage.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) smesurvival-report .pytest_cache .mypy_cache .ruff_cache
