# seg_perception: `make setup`, `make demo`, `make test` (README.md says more).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo test lint bench-node clean

setup: $(VENV)/.installed

# Re-installs only when the requirements or the package metadata change.
$(VENV)/.installed: requirements.txt setup.py package.xml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	$(PY) -m seg_perception.tools.demo

lint: setup
	$(VENV)/bin/ruff check .

# Lint, then every test. pytest exits 5 when it collects no test: that is not a failure here.
test: lint
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

bench-node: setup
	$(PY) -m seg_perception.tools.bench_node

clean:
	rm -rf $(VENV) demo_out bench_out .pytest_cache .ruff_cache *.egg-info
